// Package stats holds the small helpers the load tools share.
package stats

import (
	"net"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (nearest rank) of d, rounded to
// round; 0 for no samples.
func Percentile(d []time.Duration, p int, round time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(max((len(s)*p+99)/100, 1), len(s))
	return s[i-1].Round(round)
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
