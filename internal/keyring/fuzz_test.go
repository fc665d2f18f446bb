package keyring

import (
	"reflect"
	"strings"
	"testing"

	"regcred.dev/regcred/internal/dockercfg"
)

func FuzzLookup(f *testing.F) {
	f.Add("registry.example.com\n*.example.com:5000/team\nhttps://index.docker.io/v1/", "registry.example.com/team/app")
	f.Add("docker.io", "docker.io/library/nginx")
	f.Add("https://*.docker.io/v2/", "prefix.docker.io/path:1111/foo")
	f.Add("[::1]:5000", "[::1]:5000/app")
	f.Fuzz(func(t *testing.T, keys, repo string) {
		cfg := &dockercfg.Config{Auths: map[string]dockercfg.Entry{}}
		for i, k := range strings.Split(keys, "\n") {
			cfg.Auths[k] = dockercfg.Entry{Username: k, Password: string(rune('a' + i%26))}
		}
		var k1, k2 Keyring
		k1.Add("s", cfg)
		k2.Add("s", cfg)
		got := k1.Lookup(repo)
		if !reflect.DeepEqual(got, k2.Lookup(repo)) {
			t.Fatal("Lookup is not deterministic")
		}
		// The webhook decides with Matches; the kubelet's path is Lookup.
		// They must agree on every target, or the webhook would inject a
		// Secret the kubelet never uses, or miss one it would.
		if target := ParseTarget(repo); k1.Matches(target) != (len(k1.LookupTarget(target)) > 0) {
			t.Fatalf("Matches(%q) = %v but Lookup returned %d credentials", repo, k1.Matches(target), len(got))
		}
		// Every returned credential either matches by key, or came from the
		// Docker Hub fallback, which only runs when nothing matched.
		matched := 0
		for _, c := range got {
			if Match(c.Key, repo) {
				matched++
			}
		}
		if matched != 0 && matched != len(got) {
			t.Fatalf("mixed matched and fallback credentials for %q: %v", repo, got)
		}
		if matched == 0 && len(got) > 0 {
			if !IsDockerHub(repo) {
				t.Fatalf("fallback credentials for non-Docker-Hub repo %q", repo)
			}
			for _, c := range got {
				if c.NormalizedKey != defaultRegistryHost {
					t.Fatalf("fallback returned key %q", c.Key)
				}
			}
		}
	})
}
