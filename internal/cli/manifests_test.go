package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"regcred.dev/regcred/internal/testenv"
)

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: web
        image: nginx
`

func TestManifestsInjectRewriteImages(t *testing.T) {
	out, stderr, code := run(t, deployment, "manifests", "inject", "--secret", "hub=docker.io", "--mirror", "docker.io=harbor.internal/hub", "--secret", "harbor=harbor.internal")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "image: harbor.internal/hub/library/nginx:latest") || !strings.Contains(out, "- name: harbor") || strings.Contains(out, "- name: hub") {
		t.Errorf("inject with mirror:\n%s", out)
	}
	out, _, code = run(t, deployment, "manifests", "rewrite", "--mirror", "docker.io=harbor.internal/hub")
	if code != 0 || !strings.Contains(out, "harbor.internal/hub/library/nginx:latest") || strings.Contains(out, "imagePullSecrets") {
		t.Errorf("rewrite:\n%s", out)
	}
	out, _, code = run(t, deployment+"---\n"+strings.Replace(deployment, "nginx", "ghcr.io/acme/api:1", 1), "manifests", "images", "-o", "json")
	var images []string
	if code != 0 || json.Unmarshal([]byte(out), &images) != nil || strings.Join(images, ",") != "docker.io/library/nginx:latest,ghcr.io/acme/api:1" {
		t.Errorf("images: %s", out)
	}
}

func TestManifestsFromFilesAndDirectories(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "b.yaml", strings.Replace(deployment, "nginx", "ghcr.io/acme/b:1", 1))
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sub"), "a.yml", deployment)
	writeFile(t, dir, "notes.txt", "not yaml")
	creds := writeFile(t, dir, "creds.yaml.cfg", `apiVersion: regcred.dev/v1alpha1
kind: ClusterRegistryCredential
metadata: {name: ghcr}
spec:
  registries: [ghcr.io/acme]
  source: {secretRef: {name: ghcr-bot}}
---
apiVersion: regcred.dev/v1alpha1
kind: RegistryCredential
metadata: {name: hub, namespace: team}
spec:
  registries: [docker.io]
  secretName: dockerhub
  source: {secretRef: {name: hub}}
`)
	// The workloads name no namespace: -n says they go to team, where
	// the RegistryCredential acts.
	out, stderr, code := run(t, "", "manifests", "inject", "--credentials", creds, dir, "-n", "team")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Count(out, "kind: Deployment") != 2 || !strings.Contains(out, "- name: regcred-ghcr") || !strings.Contains(out, "- name: dockerhub") {
		t.Errorf("output:\n%s", out)
	}
	if !strings.HasPrefix(strings.TrimSpace(strings.SplitN(out, "---", 2)[1]), "apiVersion") {
		t.Errorf("files not separated:\n%s", out)
	}
}

func TestManifestsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", deployment+"---\nkind: Pod\nspec:\n\tcontainers: []\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"manifests", "inject", "--secret", "x=harbor.internal", bad}, "bad.yaml: document 2 (line 14): invalid YAML"},
		{[]string{"manifests", "inject", bad}, "no credentials"},
		{[]string{"manifests", "inject", "--secret", "noequals"}, "use NAME=REGISTRY"},
		{[]string{"manifests", "rewrite", "--mirror", "docker.io"}, "use SOURCE=MIRROR"},
		{[]string{"manifests", "rewrite", "--mirror", "library=harbor.internal"}, "must be a registry host"},
		{[]string{"manifests", "rewrite", "--secret", "x=y"}, "unknown flag: --secret"},
		{[]string{"manifests", "images", filepath.Join(dir, "missing.yaml")}, "no such file"},
	} {
		out, stderr, code := run(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, stderr, tc.want)
		}
	}
}

// TestManifestsInjectHonoursPodInjection: a credential whose
// podInjection.enabled is false is never added, as the webhook never adds
// it.
func TestManifestsInjectHonoursPodInjection(t *testing.T) {
	dir := t.TempDir()
	creds := writeFile(t, dir, "creds.yaml", `apiVersion: regcred.dev/v1alpha1
kind: ClusterRegistryCredential
metadata: {name: hub-off}
spec:
  registries: [docker.io]
  podInjection: {enabled: false}
  source: {secretRef: {name: hub}}
---
apiVersion: regcred.dev/v1alpha1
kind: ClusterRegistryCredential
metadata: {name: hub-on}
spec:
  registries: [docker.io]
  source: {secretRef: {name: hub}}
`)
	out, stderr, code := run(t, deployment, "manifests", "inject", "--credentials", creds)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "- name: regcred-hub-on") || strings.Contains(out, "regcred-hub-off") {
		t.Errorf("output:\n%s", out)
	}
	off := writeFile(t, dir, "off.yaml", `apiVersion: regcred.dev/v1alpha1
kind: ClusterRegistryCredential
metadata: {name: hub-off}
spec:
  registries: [docker.io]
  podInjection: {enabled: false}
  source: {secretRef: {name: hub}}
`)
	if _, stderr, code := run(t, deployment, "manifests", "inject", "--credentials", off); code != 1 || !strings.Contains(stderr, "podInjection.enabled: false") {
		t.Errorf("only disabled credentials: exit %d, %s", code, stderr)
	}
}

// TestManifestsInjectFollowsNamespaces: a credential is added only where
// the webhook would add it: a RegistryCredential in its own namespace, a
// ClusterRegistryCredential where its namespaceSelector selects and
// excludeNamespaces does not exclude, by the namespaces' labels from the
// --credentials files offline and from the cluster with --from-cluster.
func TestManifestsInjectFollowsNamespaces(t *testing.T) {
	const creds = `apiVersion: regcred.dev/v1alpha1
kind: ClusterRegistryCredential
metadata: {name: prod-only}
spec:
  registries: [harbor.internal]
  namespaceSelector: {matchLabels: {env: prod}}
  source: {secretRef: {name: harbor}}
---
apiVersion: regcred.dev/v1alpha1
kind: ClusterRegistryCredential
metadata: {name: everywhere}
spec:
  registries: [harbor.internal]
  excludeNamespaces: [sandbox]
  source: {secretRef: {name: harbor}}
---
apiVersion: regcred.dev/v1alpha1
kind: RegistryCredential
metadata: {name: team, namespace: shop}
spec:
  registries: [harbor.internal]
  source: {secretRef: {name: harbor}}
---
apiVersion: regcred.dev/v1alpha1
kind: RegistryCredential
metadata: {name: system, namespace: kube-system}
spec:
  registries: [harbor.internal]
  source: {secretRef: {name: harbor}}
`
	const namespaces = `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: sandbox, labels: {env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: optout, labels: {env: prod, regcred.dev/inject: "false"}}
`
	workload := func(ns string) string {
		return strings.Replace(strings.Replace(deployment, "name: web\n", "name: web\n  namespace: "+ns+"\n", 1), "nginx", "harbor.internal/app:1", 1)
	}
	want := map[string][]string{
		"shop":        {"regcred-prod-only", "regcred-everywhere", "regcred-team"},
		"sandbox":     {"regcred-prod-only"},
		"dev":         {"regcred-everywhere"},
		"kube-system": nil, // never, not even its own RegistryCredential
		"optout":      nil,
	}
	check := func(t *testing.T, args ...string) {
		t.Helper()
		for ns, secrets := range want {
			out, stderr, code := run(t, workload(ns), append([]string{"manifests", "inject"}, args...)...)
			if code != 0 {
				t.Fatalf("%s: exit %d: %s", ns, code, stderr)
			}
			for _, s := range []string{"regcred-prod-only", "regcred-everywhere", "regcred-team"} {
				if got, w := strings.Contains(out, "- name: "+s+"\n"), slices.Contains(secrets, s); got != w {
					t.Errorf("namespace %s: %s added %v, want %v:\n%s", ns, s, got, w, out)
				}
			}
		}
	}
	dir := t.TempDir()
	t.Run("offline", func(t *testing.T) {
		file := writeFile(t, dir, "creds.yaml", creds+"---\n"+namespaces)
		check(t, "--credentials", file)
		// A List's items each in their namespace; a Pod template that
		// opts out.
		list := "apiVersion: v1\nkind: List\nitems:\n"
		for _, ns := range []string{"shop", "dev"} {
			list += "- " + strings.ReplaceAll(strings.TrimSpace(workload(ns)), "\n", "\n  ") + "\n"
		}
		out, stderr, code := run(t, list, "manifests", "inject", "--credentials", file)
		if code != 0 || strings.Count(out, "- name: regcred-team") != 1 || strings.Count(out, "- name: regcred-everywhere") != 2 {
			t.Errorf("a List across namespaces: exit %d %s:\n%s", code, stderr, out)
		}
		optedOut := strings.Replace(workload("shop"), "  template:\n", "  template:\n    metadata:\n      labels: {regcred.dev/inject: \"false\"}\n", 1)
		out, stderr, code = run(t, optedOut, "manifests", "inject", "--credentials", file)
		if code != 0 || strings.Contains(out, "imagePullSecrets") {
			t.Errorf("a Pod template that opts out: exit %d %s:\n%s", code, stderr, out)
		}
	})
	t.Run("from the cluster", func(t *testing.T) {
		testenv.SkipShort(t, "integration test")
		cp := suite.ControlPlane(t)
		createDocuments(t, cp.Client, namespaces+"---\n"+creds)
		check(t, "--from-cluster", "--kubeconfig", cp.Kubeconfig)
	})
}

// TestManifestsMirrorsFollowNamespaces: a ClusterImageMirror with a
// namespaceSelector rewrites only in the namespaces it selects, as the
// webhook does; a --mirror rule everywhere; the most specific source of
// those that apply wins.
func TestManifestsMirrorsFollowNamespaces(t *testing.T) {
	const mirrors = `apiVersion: regcred.dev/v1alpha1
kind: ClusterImageMirror
metadata: {name: prod-hub}
spec:
  namespaceSelector: {matchLabels: {env: prod}}
  mirrors:
  - {source: docker.io, mirror: harbor.internal/prod-hub}
---
apiVersion: regcred.dev/v1alpha1
kind: ClusterImageMirror
metadata: {name: library}
spec:
  mirrors:
  - {source: docker.io/library, mirror: harbor.internal/library}
`
	const namespaces = `apiVersion: v1
kind: Namespace
metadata: {name: store, labels: {env: prod}}
`
	workload := func(ns, image string) string {
		return strings.Replace(strings.Replace(deployment, "name: web\n", "name: web\n  namespace: "+ns+"\n", 1), "nginx", image, 1)
	}
	cases := []struct{ ns, image, want string }{
		{"store", "grafana/grafana:11", "harbor.internal/prod-hub/grafana/grafana:11"},
		{"store", "nginx:1", "harbor.internal/library/nginx:1"}, // the more specific rule
		{"lab", "grafana/grafana:11", "grafana/grafana:11"},     // prod-hub does not select lab
		{"lab", "nginx:1", "harbor.internal/library/nginx:1"},
	}
	check := func(t *testing.T, args ...string) {
		t.Helper()
		for _, cmd := range []string{"rewrite", "inject"} {
			extra := args
			if cmd == "inject" {
				extra = append(slices.Clone(args), "--secret", "harbor=harbor.internal")
			}
			for _, tc := range cases {
				out, stderr, code := run(t, workload(tc.ns, tc.image), append([]string{"manifests", cmd}, extra...)...)
				if code != 0 {
					t.Fatalf("%s %s: exit %d: %s", cmd, tc.ns, code, stderr)
				}
				if !strings.Contains(out, "image: "+tc.want+"\n") {
					t.Errorf("%s in %s: %s became, want %s:\n%s", cmd, tc.ns, tc.image, tc.want, out)
				}
			}
		}
	}
	dir := t.TempDir()
	t.Run("offline", func(t *testing.T) {
		check(t, "--mirrors", writeFile(t, dir, "mirrors.yaml", mirrors+"---\n"+namespaces))
		// A --mirror rule applies everywhere; -n names the namespace of a
		// workload that names none.
		out, stderr, code := run(t, strings.Replace(deployment, "nginx", "grafana/grafana:11", 1), "manifests", "rewrite",
			"--mirrors", writeFile(t, dir, "m2.yaml", mirrors+"---\n"+namespaces), "-n", "store")
		if code != 0 || !strings.Contains(out, "image: harbor.internal/prod-hub/grafana/grafana:11\n") {
			t.Errorf("-n store: exit %d %s:\n%s", code, stderr, out)
		}
		out, stderr, code = run(t, workload("lab", "grafana/grafana:11"), "manifests", "rewrite", "--mirror", "docker.io=harbor.internal/hub")
		if code != 0 || !strings.Contains(out, "image: harbor.internal/hub/grafana/grafana:11\n") {
			t.Errorf("--mirror in lab: exit %d %s:\n%s", code, stderr, out)
		}
		// A Namespace given only beside the mirrors is honoured by inject's
		// opt-out too.
		quiet := writeFile(t, dir, "quiet.yaml", mirrors+"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: quiet, labels: {regcred.dev/inject: \"false\"}}\n")
		out, stderr, code = run(t, workload("quiet", "harbor.internal/app:1"), "manifests", "inject", "--mirrors", quiet, "--secret", "harbor=harbor.internal")
		if code != 0 || strings.Contains(out, "imagePullSecrets") {
			t.Errorf("inject in an opted-out namespace given in --mirrors: exit %d %s:\n%s", code, stderr, out)
		}
		bad := writeFile(t, dir, "bad.yaml", strings.Replace(mirrors, "{matchLabels: {env: prod}}", "{matchExpressions: [{key: env, operator: Sometimes}]}", 1))
		if _, stderr, code := run(t, deployment, "manifests", "rewrite", "--mirrors", bad); code != 2 || !strings.Contains(stderr, "prod-hub") {
			t.Errorf("an invalid selector: exit %d, stderr %s", code, stderr)
		}
	})
	t.Run("from the cluster", func(t *testing.T) {
		testenv.SkipShort(t, "integration test")
		cp := suite.ControlPlane(t)
		createDocuments(t, cp.Client, namespaces+"---\n"+mirrors)
		for _, tc := range cases {
			out, stderr, code := run(t, workload(tc.ns, tc.image), "manifests", "rewrite", "--from-cluster", "--kubeconfig", cp.Kubeconfig)
			if code != 0 || !strings.Contains(out, "image: "+tc.want+"\n") {
				t.Errorf("rewrite --from-cluster in %s: exit %d %s: %s, want %s:\n%s", tc.ns, code, stderr, tc.image, tc.want, out)
			}
		}
	})
}

// createDocuments creates each object of a YAML stream on the API server.
func createDocuments(t *testing.T, c client.Client, stream string) {
	t.Helper()
	for _, doc := range strings.Split(stream, "---\n") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
}
