package mirror

import (
	"strings"
	"testing"
)

const digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

func TestRewrite(t *testing.T) {
	rules := MustCompile([]Rule{
		{Source: "docker.io", Mirror: "harbor.internal/dockerhub"},
		{Source: "docker.io/bitnami", Mirror: "harbor.internal/bitnami-mirror"},
		{Source: "ghcr.io/acme", Mirror: "harbor.internal:8443/ghcr-acme/"},
		{Source: "quay.io", Mirror: "localhost:5000"},
		{Source: "index.docker.io/library", Mirror: "mirror.example.com/official"},
	})
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"nginx", "mirror.example.com/official/nginx:latest", true},
		{"library/nginx:1.27", "mirror.example.com/official/nginx:1.27", true},
		{"bitnami/redis:7.2", "harbor.internal/bitnami-mirror/redis:7.2", true},
		{"bitnamilegacy/redis:7.2", "harbor.internal/dockerhub/bitnamilegacy/redis:7.2", true},
		{"docker.io/grafana/grafana@" + digest, "harbor.internal/dockerhub/grafana/grafana@" + digest, true},
		{"grafana/grafana:11.0@" + digest, "harbor.internal/dockerhub/grafana/grafana:11.0@" + digest, true},
		{"ghcr.io/acme/api:1", "harbor.internal:8443/ghcr-acme/api:1", true},
		{"ghcr.io/acme", "harbor.internal:8443/ghcr-acme:latest", true},
		{"ghcr.io/acmecorp/api:1", "ghcr.io/acmecorp/api:1", false},
		{"quay.io/prometheus/node-exporter", "localhost:5000/prometheus/node-exporter:latest", true},
		{"registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", false},
		{"harbor.internal/dockerhub/library/nginx:latest", "harbor.internal/dockerhub/library/nginx:latest", false},
	} {
		got, _, ok, err := rules.Rewrite(tc.in)
		if err != nil || got != tc.want || ok != tc.ok {
			t.Errorf("Rewrite(%q) = %q, %t, %v; want %q, %t", tc.in, got, ok, err, tc.want, tc.ok)
		}
		// Idempotent: the result is not rewritten again by the same rules
		// unless a rule's source also matches the mirror.
		if ok {
			again, _, ok2, _ := rules.Rewrite(got)
			if ok2 {
				t.Errorf("Rewrite(%q) rewrote its own output again to %q", got, again)
			}
		}
	}
	if _, _, _, err := rules.Rewrite("Not A Valid/Image"); err == nil {
		t.Error("invalid image accepted")
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		want string
	}{
		{Rule{Source: "", Mirror: "m.io"}, "source: empty"},
		{Rule{Source: "https://docker.io", Mirror: "m.io"}, "without a scheme"},
		{Rule{Source: "library", Mirror: "m.io"}, "must be a registry host"},
		{Rule{Source: "docker.io", Mirror: "mirror"}, "mirror: \"mirror\": the first part must be a registry host"},
		{Rule{Source: "docker.io", Mirror: "m.io/UPPER"}, "not a registry host with an optional repository path"},
	} {
		_, err := Compile([]Rule{tc.rule})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.rule, err, tc.want)
		}
	}
}

func TestEmptyRulesRewriteNothing(t *testing.T) {
	var r *Rules
	got, _, ok, err := r.Rewrite("nginx")
	if got != "nginx" || ok || err != nil {
		t.Errorf("nil rules: %q %t %v", got, ok, err)
	}
}

func FuzzRewrite(f *testing.F) {
	f.Add("docker.io", "harbor.internal/dockerhub", "nginx")
	f.Add("ghcr.io/acme", "localhost:5000/x", "ghcr.io/acme/api@"+digest)
	f.Fuzz(func(t *testing.T, src, mir, image string) {
		rules, err := Compile([]Rule{{Source: src, Mirror: mir}})
		if err != nil {
			return
		}
		got, _, ok, err := rules.Rewrite(image)
		if err != nil {
			return
		}
		if !ok && got != image {
			t.Fatalf("unmatched image changed: %q -> %q", image, got)
		}
		if ok && !strings.HasPrefix(got, strings.TrimSuffix(strings.TrimSpace(mir), "/")) {
			t.Fatalf("rewritten %q does not start with the mirror %q", got, mir)
		}
	})
}
