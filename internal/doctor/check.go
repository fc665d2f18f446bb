package doctor

import (
	"context"
	"sync"

	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/registry"
)

// Attempt is one credential tried against the registry. It names the
// credential and never holds its password.
type Attempt struct {
	Key       string `json:"key,omitempty"`
	Username  string `json:"username,omitempty"`
	Source    string `json:"source,omitempty"`
	Anonymous bool   `json:"anonymous,omitempty"`
	registry.Result
}

// CheckResult is the registry's answer to the candidates, in the
// kubelet's order.
type CheckResult struct {
	PullWouldSucceed bool      `json:"pullWouldSucceed"`
	Attempts         []Attempt `json:"attempts"`
}

// Try does what a pull does with the candidates: each in order until one
// works, or anonymously when there are none (the kubelet goes anonymous
// only then).
func Try(ctx context.Context, image string, candidates []keyring.Credential, opts ...registry.Option) CheckResult {
	out := CheckResult{Attempts: []Attempt{}}
	if len(candidates) == 0 {
		res := registry.Check(ctx, image, registry.Credential{}, opts...)
		out.Attempts = append(out.Attempts, Attempt{Anonymous: true, Result: res})
		out.PullWouldSucceed = res.Reason == registry.OK
		return out
	}
	for _, c := range candidates {
		res := registry.Check(ctx, image, registry.Credential{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken}, opts...)
		out.Attempts = append(out.Attempts, Attempt{Key: c.Key, Username: c.Username, Source: c.Origin, Result: res})
		if res.Reason == registry.OK {
			out.PullWouldSucceed = true
			break
		}
	}
	return out
}

// Checker runs Try for the findings of a report, once per image and set
// of candidates: the Pods of one Deployment share one probe, and a
// registry gets one token request per (repository, credential).
type Checker struct {
	Options []registry.Option
	mu      sync.Mutex
	done    map[string]CheckResult
}

// Check fills the Check of every finding whose cause a registry can
// answer.
func (c *Checker) Check(ctx context.Context, s *Snapshot, r *Report) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = map[string]CheckResult{}
	}
	pods := map[string]*podContext{}
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.Cause == InvalidImageName || f.Cause == NeverPull || f.Cause == MalformedSecret {
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
			res = Try(ctx, f.Image, candidates, c.Options...)
			c.done[memo] = res
		}
		f.Check = &res
	}
}
