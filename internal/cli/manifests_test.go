package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	out, stderr, code := run(t, "", "manifests", "inject", "--credentials", creds, dir)
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
