package credential

import (
	"strings"

	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/keyring"
)

// dockerHubFallbackKey is the key whose entry the kubelet uses for a
// Docker Hub image that no other key matched.
const dockerHubFallbackKey = "index.docker.io"

// CoveredEntries returns the entries of cfg that the kubelet could use for
// some image the registries cover, and the keys it dropped: a source
// Secret may hold logins for registries the credential is not for, and
// those are not copied into every namespace it reaches.
//
// An entry is kept when its key and some registry could both match one
// image, by the kubelet's rules (internal/keyring): either matches the
// repository the other names ("harbor.example.com" keeps
// "harbor.example.com/team" and "*.example.com", and the other way
// round), or one of them is the Docker Hub fallback key and the other
// reaches Docker Hub. Plain comparison of normalized keys would drop an
// entry for a path below a covered registry, which the kubelet does use
// for that registry's images. Two keys that both glob the same host label
// ("a*" and "*b") are taken as not overlapping: rare, and the safe side
// for a password is not to copy it. Keys the kubelet cannot parse are
// dropped: it would never use them.
func CoveredEntries(cfg *dockercfg.Config, registries []string) (*dockercfg.Config, []string) {
	if cfg == nil {
		return nil, nil
	}
	regs := make([]string, 0, len(registries))
	for _, r := range registries {
		if n, err := keyring.NormalizeKey(r); err == nil {
			regs = append(regs, n)
		}
	}
	out := &dockercfg.Config{Auths: make(map[string]dockercfg.Entry, len(cfg.Auths))}
	var dropped []string
	for _, key := range cfg.Keys() {
		if coveredKey(key, regs) {
			out.Auths[key] = cfg.Auths[key]
		} else {
			dropped = append(dropped, key)
		}
	}
	return out, dropped
}

func coveredKey(key string, registries []string) bool {
	norm, err := keyring.NormalizeKey(key)
	if err != nil {
		return false
	}
	for _, r := range registries {
		if overlap(norm, r) {
			return true
		}
	}
	return false
}

// overlap reports whether two normalized keys could both match one image.
func overlap(a, b string) bool {
	if keyring.Match(a, b) || keyring.Match(b, a) {
		return true
	}
	return a == dockerHubFallbackKey && reachesDockerHub(b) || b == dockerHubFallbackKey && reachesDockerHub(a)
}

// reachesDockerHub reports whether the kubelet would use a normalized key
// for some Docker Hub image (the kubelet looks those up as
// "docker.io/NAMESPACE/NAME").
func reachesDockerHub(norm string) bool {
	if norm == dockerHubFallbackKey {
		return true
	}
	path := ""
	if i := strings.Index(norm, "/"); i >= 0 {
		path = norm[i:]
	}
	return keyring.Match(norm, "docker.io"+path)
}
