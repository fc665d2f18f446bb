package nodecreds

import (
	"strings"
	"time"

	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"

	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/keyring"
)

// Rendered is a credential's source as the broker hands it out: the
// entries of its docker config and when a short-lived token in it stops
// working (zero for none).
type Rendered struct {
	Config    *dockercfg.Config
	ExpiresAt time.Time
}

// servedCredential is one credential that answers a request.
type servedCredential struct {
	origin string
	Rendered
}

// authFor is the answer's auth for repo (the repository name the kubelet
// looks up, after Docker normalization): the logins the kubelet would try
// with these credentials as pull Secrets of the Pod, in its order
// (internal/keyring), without repeats. The kubelet reads the answer as a
// docker config and visits its keys in reverse byte order, so each login
// goes under its own key, all matching repo, in that order: repo itself,
// then its parents down to the host ("host/a/b", "host/a", "host").
// Logins past the number of keys are dropped and counted: the kubelet
// would reach them only after every earlier one failed.
func authFor(repo string, target keyring.Target, creds []servedCredential) (map[string]credentialproviderv1.AuthConfig, int) {
	var kr keyring.Keyring
	for _, c := range creds {
		kr.Add(c.origin, c.Config)
	}
	found := kr.LookupTarget(target)
	slots := keySlots(repo)
	out := make(map[string]credentialproviderv1.AuthConfig, len(found))
	seen := map[credentialproviderv1.AuthConfig]bool{}
	dropped := 0
	for _, f := range found {
		a := credentialproviderv1.AuthConfig{Username: f.Username, Password: f.Password}
		if seen[a] {
			continue
		}
		seen[a] = true
		if len(out) == len(slots) {
			dropped++
			continue
		}
		out[slots[len(out)]] = a
	}
	return out, dropped
}

// keySlots are the keys that match repo, in the order the kubelet visits
// them: repo and each parent path, down to the bare host.
func keySlots(repo string) []string {
	out := []string{repo}
	for {
		i := strings.LastIndexByte(repo, '/')
		if i <= 0 {
			return out
		}
		repo = repo[:i]
		out = append(out, repo)
	}
}

// cacheFor is how long the kubelet may reuse an answer: the configured
// duration, never past a short-lived token's expiry nor the
// ServiceAccount token's. An empty answer is not cached, so a credential
// made a moment later is used at the next pull.
func cacheFor(configured time.Duration, now time.Time, served []servedCredential, tokenExpires time.Time, empty bool) time.Duration {
	if empty {
		return 0
	}
	d := configured
	limit := func(t time.Time) {
		if t.IsZero() {
			return
		}
		// Leave the kubelet a margin to pull with what it got.
		if left := t.Sub(now) - 30*time.Second; left < d {
			d = left
		}
	}
	for _, s := range served {
		limit(s.ExpiresAt)
	}
	limit(tokenExpires)
	if d < 0 {
		return 0
	}
	return d.Truncate(time.Second)
}
