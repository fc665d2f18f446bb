package doctor

import (
	"context"
	"sync"

	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/kubeletmsg"
	"regcred.dev/regcred/internal/registry"
)

// Checker runs registry.Try for the findings of a report, once per image
// and set of candidates: the Pods of one Deployment share one probe, and a
// registry gets one token request per (repository, credential).
type Checker struct {
	Options []registry.Option
	mu      sync.Mutex
	done    map[string]registry.TryResult
}

// Check fills the Check of every finding whose cause a registry can
// answer.
func (c *Checker) Check(ctx context.Context, s *Snapshot, r *Report) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = map[string]registry.TryResult{}
	}
	pods := map[string]*podContext{}
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.Cause == kubeletmsg.InvalidImageName || f.Cause == kubeletmsg.NeverPull || f.Cause == kubeletmsg.MalformedSecret {
			continue
		}
		key := f.Namespace + "/" + f.Pod
		pc := pods[key]
		if pc == nil {
			for _, p := range s.Pods {
				if p.Namespace == f.Namespace && p.Name == f.Pod {
					pc = newPodContext(s, p)
				}
			}
			if pc == nil {
				continue
			}
			pods[key] = pc
		}
		named, err := keyring.ParseImage(f.Image)
		if err != nil {
			continue
		}
		candidates := pc.keyring.Lookup(named.Name())
		memo := f.Image
		for _, cand := range candidates {
			memo += "\x00" + cand.Origin + "\x00" + cand.Key + "\x00" + cand.Username
		}
		res, ok := c.done[memo]
		if !ok {
			res = registry.Try(ctx, f.Image, candidates, c.Options...)
			c.done[memo] = res
		}
		f.Check = &res
	}
}
