package keyring

import (
	"fmt"
	"reflect"
	"testing"

	"regcred.dev/regcred/internal/dockercfg"
)

func cfg(entries map[string]dockercfg.Entry) *dockercfg.Config {
	return &dockercfg.Config{Auths: entries}
}

func one(key string) *dockercfg.Config {
	return cfg(map[string]dockercfg.Entry{key: {Username: "foo", Password: "bar", Email: "foo@bar.baz"}})
}

// The cases below restate the kubelet's own keyring tests
// (pkg/credentialprovider/keyring_test.go at v1.37.1) against this package.

func TestMatchHostGlobs(t *testing.T) {
	for _, tc := range []struct {
		key, repo string
		want      bool
	}{
		{"*.kubernetes.io", "prefix.kubernetes.io", true},
		{"prefix.*.io", "prefix.kubernetes.io", true},
		{"prefix.kubernetes.*", "prefix.kubernetes.io", true},
		{"*-good.kubernetes.io", "prefix-good.kubernetes.io", true},
		{"*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true},
		{"prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true},
		{"*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", true},
		{"prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", true},
		{"*.kubernetes.io", "kubernetes.io", false},
		{"*.*.kubernetes.io", "prefix.kubernetes.io", false},
		{"*.*.kubernetes.io", "kubernetes.io", false},
		{"*kubernetes.io", "a.kubernetes.io", false},
		{"*kubernetes.io", "kubernetes.io", true},
		{"*.*.*.kubernetes.io", "a.b.c.kubernetes.io", true},
		{"kubernetes.io", "kubernetes.com", false},
		{"k*.io", "quay.io", false},
		{"*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", false},
		{"prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", false},
		// Beyond the kubelet's table: behaviours users trip over.
		{"example.com/team", "example.com/teams/app", true}, // string, not segment, prefix
		{"example.com:443", "example.com/app", false},       // ports compare literally
		{"registry.io", "REGISTRY.io/app", false},           // globs are case-sensitive
		{"*.io", "registry.io/app", true},
		{"reg?stry.io", "registry.io/app", false},     // "?" starts a URL query: the key's host is "reg"
		{"[a-c].io", "b.io/app", false},               // brackets are for IPv6 hosts: not a valid key
		{"re[g-h]istry.io", "registry.io/app", false}, // url.Parse rejects brackets in a host name
		{"re[g-.io", "registry.io/app", false},        // a bad glob never matches
	} {
		if got := Match(tc.key, tc.repo); got != tc.want {
			t.Errorf("Match(%q, %q) = %t, want %t", tc.key, tc.repo, got, tc.want)
		}
	}
}

func TestLookupGlobKeys(t *testing.T) {
	for _, tc := range []struct{ key, target string }{
		{"https://hello.kubernetes.io", "hello.kubernetes.io"},
		{"https://*.docker.io", "prefix.docker.io"},
		{"https://prefix.*.io", "prefix.docker.io"},
		{"https://prefix.docker.*", "prefix.docker.io"},
		{"https://*.docker.io/path", "prefix.docker.io/path"},
		{"https://prefix.*.io/path", "prefix.docker.io/path/subpath"},
		{"https://prefix.docker.*/path", "prefix.docker.io/path"},
		{"https://*.docker.io:8888", "prefix.docker.io:8888"},
		{"https://prefix.*.io:8888", "prefix.docker.io:8888"},
		{"https://prefix.docker.*:8888", "prefix.docker.io:8888"},
		{"https://*.docker.io/path:1111", "prefix.docker.io/path:1111"},
		{"https://*.docker.io/v1/", "prefix.docker.io/path:1111"},
		{"https://*.docker.io/v2/", "prefix.docker.io/path:1111"},
		{"https://prefix.docker.*/path:1111", "prefix.docker.io/path:1111"},
		{"prefix.docker.io:1111", "prefix.docker.io:1111/path"},
		{"*.docker.io:1111", "prefix.docker.io:1111/path"},
	} {
		var k Keyring
		k.Add("test", one(tc.key))
		got := k.Lookup(tc.target + "/foo/bar")
		if len(got) == 0 {
			t.Errorf("key %q: no credential for %q", tc.key, tc.target)
			continue
		}
		if got[0].Username != "foo" || got[0].Password != "bar" || got[0].Email != "foo@bar.baz" {
			t.Errorf("key %q: got %v", tc.key, got[0])
		}
	}
}

func TestLookupMisses(t *testing.T) {
	for _, tc := range []struct{ key, target string }{
		{"https://hello.kubernetes.io", "world.mesos.org/foo/bar"},
		{"https://*.docker.com", "prefix.docker.io"},
		{"https://suffix.*.io", "prefix.docker.io"},
		{"https://prefix.docker.c*", "prefix.docker.io"},
		{"https://prefix.*.io/path:1111", "prefix.docker.io/path/subpath:1111"},
		{"suffix.*.io", "prefix.docker.io"},
		// Docker Hub credentials do not leak to other registries.
		{"https://index.docker.io/v1/", "world.mesos.org/foo/bar"},
	} {
		var k Keyring
		k.Add("test", one(tc.key))
		if got := k.Lookup(tc.target + "/foo/bar"); len(got) != 0 {
			t.Errorf("key %q matched %q: %v", tc.key, tc.target, got)
		}
	}
}

func TestDockerHubFallback(t *testing.T) {
	for _, image := range []string{"google/docker-registry", "jenkins", "index.docker.io/v1//google/docker-registry"} {
		var k Keyring
		k.Add("test", one("https://index.docker.io/v1/"))
		got := k.Lookup(image)
		if len(got) != 1 || got[0].Username != "foo" {
			t.Errorf("Lookup(%q) = %v, want the one Docker Hub credential", image, got)
		}
	}
	// The images a Pod names go through Docker normalization first.
	for _, image := range []string{"nginx", "library/nginx:1.27", "docker.io/library/nginx@sha256:" + fmt.Sprintf("%064d", 0), "bitnami/redis"} {
		var k Keyring
		k.Add("test", one("https://index.docker.io/v1/"))
		_, got, err := k.LookupImage(image)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Errorf("LookupImage(%q) = %v, want the Docker Hub credential", image, got)
		}
	}
	// A "docker.io" key matches directly, so the fallback does not run and
	// an "index.docker.io" credential is not added to it.
	var k Keyring
	k.Add("a", cfg(map[string]dockercfg.Entry{"docker.io": {Username: "direct"}, "index.docker.io": {Username: "fallback"}}))
	_, got, _ := k.LookupImage("nginx")
	if names := usernames(got); !reflect.DeepEqual(names, []string{"direct"}) {
		t.Errorf("with docker.io and index.docker.io keys: got %v, want [direct]", names)
	}
}

func TestIsDockerHub(t *testing.T) {
	for repo, want := range map[string]bool{
		"foo/bar":                 true,
		"docker.io/foo/bar":       true,
		"index.docker.io/foo/bar": true,
		"foo":                     true,
		"":                        false,
		"registry.tld/foo/bar":    false,
		"registry:5000/foo/bar":   false,
		"myhostdocker.io/foo/bar": false,
	} {
		if got := IsDockerHub(repo); got != want {
			t.Errorf("IsDockerHub(%q) = %t, want %t", repo, got, want)
		}
	}
}

func TestLookupOrder(t *testing.T) {
	var k Keyring
	k.Add("secret-a", cfg(map[string]dockercfg.Entry{
		"bar.example.com/pong": {Username: "grace"},
		"bar.example.com":      {Username: "ada"},
	}))
	for _, tc := range []struct {
		repo string
		want []string
	}{
		{"bar.example.com", []string{"ada"}},
		{"bar.example.com/pong", []string{"grace", "ada"}},
		{"bar.example.com/ping", []string{"ada"}},
		{"bar.example.com/pongz", []string{"grace", "ada"}},
		{"bar.example.com/pong/pang", []string{"grace", "ada"}},
		{"example.com", nil},
		{"foo.example.com", nil},
	} {
		if got := usernames(k.Lookup(tc.repo)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Lookup(%q) = %v, want %v", tc.repo, got, tc.want)
		}
	}
}

func TestSchemeAndAPIPathStripped(t *testing.T) {
	var k Keyring
	k.Add("s", cfg(map[string]dockercfg.Entry{"https://quay.io/v1/": {Username: "rex"}}))
	for _, repo := range []string{"quay.io", "quay.io/foo", "quay.io/foo/bar"} {
		if got := usernames(k.Lookup(repo)); !reflect.DeepEqual(got, []string{"rex"}) {
			t.Errorf("Lookup(%q) = %v, want [rex]", repo, got)
		}
	}
}

// TestOrderIsReverseLexicographic pins the order the kubelet really uses:
// reverse byte order of normalized keys across all secrets, then the order
// of the secrets for the same key.
func TestOrderIsReverseLexicographic(t *testing.T) {
	var k Keyring
	k.Add("first", cfg(map[string]dockercfg.Entry{
		"*.example.com":                    {Username: "glob"},
		"registry.example.com":             {Username: "host-first"},
		"https://registry.example.com/v2/": {Username: "host-first-v2"},
	}))
	k.Add("second", cfg(map[string]dockercfg.Entry{
		"registry.example.com/team": {Username: "team"},
		"registry.example.com":      {Username: "host-second"},
	}))
	got := usernames(k.Lookup("registry.example.com/team/app"))
	want := []string{"team", "host-first-v2", "host-first", "host-second", "glob"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

func TestNormalizeKey(t *testing.T) {
	for raw, want := range map[string]string{
		"registry.example.com":              "registry.example.com",
		"https://registry.example.com":      "registry.example.com",
		"http://registry.example.com:5000/": "registry.example.com:5000",
		"https://index.docker.io/v1/":       "index.docker.io",
		"registry.example.com/v2/team":      "registry.example.com/team",
		"registry.example.com/team/":        "registry.example.com/team/",
		"*.example.com:5000/team":           "*.example.com:5000/team",
	} {
		got, err := NormalizeKey(raw)
		if err != nil || got != want {
			t.Errorf("NormalizeKey(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	if _, err := NormalizeKey("exa mple.com:port"); err == nil {
		t.Error("NormalizeKey accepted a key url.Parse rejects")
	}
}

func TestNormalizeImage(t *testing.T) {
	for in, want := range map[string]string{
		"nginx":           "docker.io/library/nginx:latest",
		"bitnami/redis:7": "docker.io/bitnami/redis:7",
		"ghcr.io/org/app@sha256:" + fmt.Sprintf("%064d", 1): "ghcr.io/org/app@sha256:" + fmt.Sprintf("%064d", 1),
		"localhost:5000/app": "localhost:5000/app:latest",
	} {
		got, err := NormalizeImage(in)
		if err != nil || got != want {
			t.Errorf("NormalizeImage(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "docker.io/UPPER/case", "nginx:", "a b"} {
		if _, err := NormalizeImage(bad); err == nil {
			t.Errorf("NormalizeImage(%q) succeeded", bad)
		}
	}
}

func usernames(creds []Credential) []string {
	var out []string
	for _, c := range creds {
		out = append(out, c.Username)
	}
	return out
}
