package credential

import (
	"slices"
	"testing"

	"regcred.dev/regcred/internal/dockercfg"
)

func TestCoveredEntries(t *testing.T) {
	for _, tc := range []struct {
		name       string
		keys       []string
		registries []string
		want       []string
	}{
		{"only the covered host", []string{"harbor.example.com", "other.example.com"}, []string{"harbor.example.com"}, []string{"harbor.example.com"}},
		{"scheme and /v2/ are the kubelet's", []string{"https://harbor.example.com/v2/", "http://other.example.com"}, []string{"harbor.example.com"}, []string{"https://harbor.example.com/v2/"}},
		{"a path below the registry is used for its images", []string{"harbor.example.com/team", "harbor.example.com"}, []string{"harbor.example.com"}, []string{"harbor.example.com", "harbor.example.com/team"}},
		{"a host entry serves a registry path", []string{"harbor.example.com", "harbor.example.com/other"}, []string{"harbor.example.com/team"}, []string{"harbor.example.com"}},
		{"string prefix, as the kubelet", []string{"harbor.example.com/team"}, []string{"harbor.example.com/te"}, []string{"harbor.example.com/team"}},
		{"sibling paths do not overlap", []string{"harbor.example.com/a"}, []string{"harbor.example.com/b"}, nil},
		{"ports must be equal", []string{"harbor.example.com:5000", "harbor.example.com"}, []string{"harbor.example.com:5000"}, []string{"harbor.example.com:5000"}},
		{"glob entry", []string{"*.example.com", "*.other.com"}, []string{"harbor.example.com"}, []string{"*.example.com"}},
		{"glob registry", []string{"a.mirror.example.com", "mirror.example.com", "a.b.mirror.example.com"}, []string{"*.mirror.example.com"}, []string{"a.mirror.example.com"}},
		{"label count must be equal", []string{"example.com"}, []string{"*.example.com"}, nil},
		{"docker hub fallback key", []string{"https://index.docker.io/v1/", "ghcr.io"}, []string{"docker.io"}, []string{"https://index.docker.io/v1/"}},
		{"docker hub entry for the fallback registry", []string{"docker.io", "docker.io/acme", "quay.io"}, []string{"index.docker.io"}, []string{"docker.io", "docker.io/acme"}},
		{"fallback key is not for other registries", []string{"index.docker.io"}, []string{"ghcr.io"}, nil},
		{"unparsable key dropped", []string{"harbor.example.com", "har bor.example.com:x"}, []string{"harbor.example.com"}, []string{"harbor.example.com"}},
		{"several registries", []string{"a.example.com", "b.example.com", "c.example.com"}, []string{"a.example.com", "c.example.com"}, []string{"a.example.com", "c.example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &dockercfg.Config{Auths: map[string]dockercfg.Entry{}}
			for _, k := range tc.keys {
				cfg.Auths[k] = dockercfg.Entry{Username: "u-" + k, Password: "p"}
			}
			got, dropped := CoveredEntries(cfg, tc.registries)
			if keys := got.Keys(); !slices.Equal(keys, tc.want) && !(len(keys) == 0 && len(tc.want) == 0) {
				t.Errorf("kept %v, want %v", keys, tc.want)
			}
			if len(dropped)+len(got.Auths) != len(tc.keys) {
				t.Errorf("dropped %v and kept %v of %v", dropped, got.Keys(), tc.keys)
			}
			for k, e := range got.Auths {
				if e != cfg.Auths[k] {
					t.Errorf("entry %q changed", k)
				}
			}
		})
	}
}
