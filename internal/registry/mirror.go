package registry

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/mirror"
)

// MirrorJob copies one image to its place under the destination.
type MirrorJob struct {
	Source, Dest string
}

// MirrorPlan is where a set of images go.
type MirrorPlan struct {
	Jobs []MirrorJob
	// Rules point manifests at the copies: one per source registry, sorted.
	Rules []mirror.Rule
}

// PlanMirror places each image under dest (a registry host with an
// optional path), in a path of its own per source registry:
// docker.io/library/nginx:1.27 goes to DEST/docker.io/library/nginx:1.27,
// and a host becomes a path component (lower case, ":" to "-", no
// brackets). Errors name the bad input.
func PlanMirror(images []string, dest string) (*MirrorPlan, error) {
	dest, err := mirror.NormalizeMirror(dest)
	if err != nil {
		return nil, fmt.Errorf("destination %w", err)
	}
	plan := &MirrorPlan{}
	prefixes := map[string]string{}
	for _, img := range images {
		named, err := keyring.ParseImage(img)
		if err != nil {
			return nil, err
		}
		domain := strings.SplitN(named.Name(), "/", 2)[0]
		prefix := dest + "/" + pathSafe(domain)
		prefixes[domain] = prefix
		rewritten, _, _, err := mirror.MustCompile([]mirror.Rule{{Source: domain, Mirror: prefix}}).Rewrite(img)
		if err != nil {
			return nil, err
		}
		src, _ := keyring.NormalizeImage(img)
		plan.Jobs = append(plan.Jobs, MirrorJob{Source: src, Dest: rewritten})
	}
	for domain, prefix := range prefixes {
		plan.Rules = append(plan.Rules, mirror.Rule{Source: domain, Mirror: prefix})
	}
	sort.Slice(plan.Rules, func(i, j int) bool { return plan.Rules[i].Source < plan.Rules[j].Source })
	return plan, nil
}

// MirrorResult is what became of one job.
type MirrorResult struct {
	Job MirrorJob
	// Copy is set when the image is in place (copied, or already there).
	Copy *CopyResult
	// Failure is set, with its reason class, when it is not.
	Failure *Result
}

// MirrorObserver hears of each image as Mirror starts and finishes it,
// from several goroutines at once.
type MirrorObserver interface {
	// Started may return a channel for the upload's byte counts (nil for
	// none); Copy closes it.
	Started(job MirrorJob) chan<- v1.Update
	Finished(r MirrorResult)
}

// Mirror copies the plan's images, WithConcurrency at a time (default 4),
// with Copy and the same options, and returns a result per job in the
// plan's order. It prints nothing; an observer may.
func Mirror(ctx context.Context, plan *MirrorPlan, opts ...Option) []MirrorResult {
	o := newOptions(opts)
	n := o.concurrency
	if n < 1 {
		n = 4
	}
	results := make([]MirrorResult, len(plan.Jobs))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, job := range plan.Jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			copyOpts := append([]Option(nil), opts...)
			if o.observer != nil {
				if ch := o.observer.Started(job); ch != nil {
					copyOpts = append(copyOpts, WithProgress(ch))
				}
			}
			r := MirrorResult{Job: job}
			res, err := Copy(ctx, job.Source, job.Dest, copyOpts...)
			if err != nil {
				f := Classify(ctx, err)
				f.Message = err.Error()
				r.Failure = &f
			} else {
				r.Copy = res
			}
			results[i] = r
			if o.observer != nil {
				o.observer.Finished(r)
			}
		}()
	}
	wg.Wait()
	return results
}

// pathSafe turns a registry host into a repository path component.
func pathSafe(domain string) string {
	return strings.NewReplacer(":", "-", "[", "", "]", "").Replace(strings.ToLower(domain))
}
