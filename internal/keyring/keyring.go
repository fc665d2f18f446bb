// Package keyring decides which credentials the kubelet tries for an image,
// and in which order. It follows the kubelet's pkg/credentialprovider
// (BasicDockerKeyring) rule for rule:
//
//   - A registry key is normalized by dropping an http:// or https:// scheme
//     and a leading /v1/ or /v2/ path; what remains is host[:port][/path].
//   - A key matches a repository when the ports are equal, the hosts have
//     the same number of dot-separated labels and each label matches as a
//     glob (filepath.Match: "*", "?", "[a-z]"), and the key's path is a
//     string prefix of the repository's path (not a path-segment prefix:
//     "example.com/team" matches "example.com/teams/app").
//   - Every matching credential is returned, keys visited in reverse
//     lexicographic (byte) order of the normalized key, which is not "most
//     specific first": "quay.io/team" comes before "quay.io", but
//     "registry.io" also comes before "*.registry.io". Credentials under the
//     same key keep the order in which they were added (Pod
//     imagePullSecrets order).
//   - Only when nothing matched and the image is on Docker Hub, the
//     credentials stored under the key "index.docker.io" are used.
//
// The image the kubelet looks up is the repository name after Docker
// normalization ("nginx" → "docker.io/library/nginx"), without tag or digest.
package keyring

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strings"

	"github.com/distribution/reference"

	"regcred.dev/regcred/internal/dockercfg"
)

const defaultRegistryHost = "index.docker.io"

// Credential is one credential the kubelet may try.
type Credential struct {
	// Key is the registry key as written in the source config.
	Key string
	// NormalizedKey is Key as the kubelet indexes it: host[:port][/path].
	NormalizedKey string
	// Origin says where the credential came from: a file path or a
	// namespace/name of a Secret.
	Origin string
	dockercfg.Entry
}

// Keyring holds credentials indexed by normalized registry key. The zero
// value is empty and ready to use. It is not safe for concurrent Add, but
// Lookup may be called concurrently once adding is done.
type Keyring struct {
	index []globKey
	creds map[string][]Credential
}

// globKey is a normalized key, parsed once when added: the same parse as
// a target, its host labels read as globs.
type globKey struct {
	key string
	Target
}

func newGlobKey(norm string) globKey {
	return globKey{key: norm, Target: ParseTarget(norm)}
}

// Add adds every entry of cfg, attributed to origin. Entries whose key the
// kubelet cannot parse are skipped and returned, so callers can report them.
// Within one config, entries are added in sorted key order (the kubelet
// iterates a Go map, so its order among keys of one config that normalize
// alike is random).
func (k *Keyring) Add(origin string, cfg *dockercfg.Config) (skipped []string) {
	if cfg == nil {
		return nil
	}
	if k.creds == nil {
		k.creds = map[string][]Credential{}
	}
	for _, raw := range cfg.Keys() {
		norm, err := NormalizeKey(raw)
		if err != nil {
			skipped = append(skipped, raw)
			continue
		}
		if _, seen := k.creds[norm]; !seen {
			k.index = append(k.index, newGlobKey(norm))
		}
		k.creds[norm] = append(k.creds[norm], Credential{Key: raw, NormalizedKey: norm, Origin: origin, Entry: cfg.Auths[raw]})
	}
	sort.Slice(k.index, func(i, j int) bool { return k.index[i].key > k.index[j].key })
	return skipped
}

// Len is the number of credentials in the keyring.
func (k *Keyring) Len() int {
	n := 0
	for _, c := range k.creds {
		n += len(c)
	}
	return n
}

// Target is a repository name parsed once for matching against many
// keyrings.
type Target struct {
	repo   string
	labels []string
	port   string
	path   string
	valid  bool
}

// ParseTarget prepares a repository name (as the kubelet passes it, see
// LookupImage) for lookups.
func ParseTarget(repo string) Target {
	t := Target{repo: repo}
	u, err := parseSchemeless(repo)
	if err != nil {
		return t
	}
	t.labels, t.port = splitHost(u)
	t.path = u.Path
	t.valid = true
	return t
}

// Lookup returns the credentials the kubelet tries for repo, a repository
// name as the kubelet passes it (see LookupImage), in the order it tries
// them.
func (k *Keyring) Lookup(repo string) []Credential {
	return k.LookupTarget(ParseTarget(repo))
}

// LookupTarget is Lookup for a parsed target.
func (k *Keyring) LookupTarget(t Target) []Credential {
	var out []Credential
	if t.valid {
		for i := range k.index {
			if k.index[i].matches(t.labels, t.port, t.path) {
				out = append(out, k.creds[k.index[i].key]...)
			}
		}
	}
	if len(out) > 0 {
		return out
	}
	if IsDockerHub(t.repo) {
		if creds, ok := k.creds[defaultRegistryHost]; ok {
			return append([]Credential(nil), creds...)
		}
	}
	return nil
}

// Matches reports whether the kubelet would try any credential of the
// keyring for the target, without allocating.
func (k *Keyring) Matches(t Target) bool {
	if t.valid {
		for i := range k.index {
			if k.index[i].matches(t.labels, t.port, t.path) {
				return true
			}
		}
	}
	if IsDockerHub(t.repo) {
		_, ok := k.creds[defaultRegistryHost]
		return ok
	}
	return false
}

// LookupImage parses image as the kubelet does and returns the normalized
// repository name it looks up together with the matching credentials.
func (k *Keyring) LookupImage(image string) (repo string, creds []Credential, err error) {
	named, err := ParseImage(image)
	if err != nil {
		return "", nil, err
	}
	repo = named.Name()
	return repo, k.Lookup(repo), nil
}

// ParseImage parses an image reference with Docker's normalization, as the
// kubelet does before looking up credentials.
func ParseImage(image string) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", image, err)
	}
	return named, nil
}

// NormalizeImage returns the fully qualified form of an image reference:
// registry, repository and a tag ("latest" when neither tag nor digest is
// given).
func NormalizeImage(image string) (string, error) {
	named, err := ParseImage(image)
	if err != nil {
		return "", err
	}
	return reference.TagNameOnly(named).String(), nil
}

// NormalizeKey returns the key the kubelet indexes a registry key under.
func NormalizeKey(raw string) (string, error) {
	withScheme := raw
	if !strings.HasPrefix(withScheme, "https://") && !strings.HasPrefix(withScheme, "http://") {
		withScheme = "https://" + withScheme
	}
	parsed, err := url.Parse(withScheme)
	if err != nil {
		return "", fmt.Errorf("registry key %q is not a valid URL: %w", raw, err)
	}
	path := parsed.Path
	if strings.HasPrefix(path, "/v2/") || strings.HasPrefix(path, "/v1/") {
		path = path[3:]
	}
	if path != "" && path != "/" {
		return parsed.Host + path, nil
	}
	return parsed.Host, nil
}

// Match reports whether the kubelet would use a credential stored under
// key for repo, not counting the Docker Hub fallback.
func Match(key, repo string) bool {
	norm, err := NormalizeKey(key)
	if err != nil {
		return false
	}
	target, err := parseSchemeless(repo)
	if err != nil {
		return false
	}
	labels, port := splitHost(target)
	g := newGlobKey(norm)
	return g.matches(labels, port, target.Path)
}

// IsDockerHub reports whether the kubelet treats repo as a Docker Hub
// repository for its index.docker.io fallback.
func IsDockerHub(repo string) bool {
	first, _, hasSlash := strings.Cut(repo, "/")
	if first == "" {
		return false
	}
	if !hasSlash {
		return true
	}
	if first == "docker.io" || first == "index.docker.io" {
		return true
	}
	// A first component with neither "." nor ":" is a Docker Hub user
	// name, not a registry host.
	return !strings.ContainsAny(first, ".:")
}

func parseSchemeless(s string) (*url.URL, error) {
	u, err := url.Parse("https://" + s)
	if err != nil {
		return nil, err
	}
	u.Scheme = ""
	return u, nil
}

func splitHost(u *url.URL) (labels []string, port string) {
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, ""
	}
	return strings.Split(host, "."), port
}

func (g *globKey) matches(labels []string, port, path string) bool {
	if !g.valid || g.port != port || len(g.labels) != len(labels) {
		return false
	}
	if !strings.HasPrefix(path, g.path) {
		return false
	}
	for i, l := range g.labels {
		ok, err := filepath.Match(l, labels[i])
		if err != nil || !ok {
			return false
		}
	}
	return true
}

// Host labels, port and path of a parsed target or key, for front ends
// that compile the kubelet's rules into another language (the admission
// policies): the same parse, so the two cannot drift.

// Valid reports whether the name parsed; an invalid one matches no key.
func (t Target) Valid() bool { return t.valid }

// Labels are the dot-separated labels of the host, without the port.
func (t Target) Labels() []string { return t.labels }

// Port is the port, "" when none was given.
func (t Target) Port() string { return t.port }

// Path is the path after the host, "" or starting with "/".
func (t Target) Path() string { return t.path }
