package registry

import (
	"context"
	"slices"
	"strings"

	"regcred.dev/regcred/internal/keyring"
)

// Attempt is one credential tried against the registry. It names the
// credential and never holds its password. Its JSON form is part of the
// stable output of `regcred check` and `regcred doctor`.
type Attempt struct {
	Key       string `json:"key,omitempty"`
	Username  string `json:"username,omitempty"`
	Source    string `json:"source,omitempty"`
	Anonymous bool   `json:"anonymous,omitempty"`
	Result
}

// TryResult is the registry's answer to the candidates, in the kubelet's
// order.
type TryResult struct {
	PullWouldSucceed bool      `json:"pullWouldSucceed"`
	Attempts         []Attempt `json:"attempts"`
}

// Try does what a pull does with the candidates: each in order until one
// works, or anonymously when there are none (the kubelet goes anonymous
// only then).
func Try(ctx context.Context, image string, candidates []keyring.Credential, opts ...Option) TryResult {
	out := TryResult{Attempts: []Attempt{}}
	if len(candidates) == 0 {
		res := Check(ctx, image, Credential{}, opts...)
		out.Attempts = append(out.Attempts, Attempt{Anonymous: true, Result: res})
		out.PullWouldSucceed = res.Reason == OK
		return out
	}
	fromKey := newOptions(opts).insecureFromKey
	for _, c := range candidates {
		copts := opts
		if fromKey {
			copts = append(slices.Clip(opts), WithInsecure(strings.HasPrefix(c.Key, "http://")))
		}
		res := Check(ctx, image, Credential{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken}, copts...)
		out.Attempts = append(out.Attempts, Attempt{Key: c.Key, Username: c.Username, Source: c.Origin, Result: res})
		if res.Reason == OK {
			out.PullWouldSucceed = true
			break
		}
	}
	return out
}
