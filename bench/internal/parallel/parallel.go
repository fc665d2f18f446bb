// Package parallel runs a benchmark's setup calls a few at a time.
package parallel

import "golang.org/x/sync/errgroup"

// Each calls f on every item with at most workers calls at once, and
// returns the first error once all calls are done.
func Each(workers int, items []string, f func(string) error) error {
	var g errgroup.Group
	g.SetLimit(workers)
	for _, it := range items {
		g.Go(func() error { return f(it) })
	}
	return g.Wait()
}
