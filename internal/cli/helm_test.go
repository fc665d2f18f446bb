package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"regcred.dev/regcred/internal/manifests"
	"regcred.dev/regcred/internal/testenv"
)

func isolatedHelmEnv(t *testing.T, extra ...string) []string {
	dir := t.TempDir()
	env := append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(dir, "config"),
		"HELM_CACHE_HOME="+filepath.Join(dir, "cache"),
		"HELM_DATA_HOME="+filepath.Join(dir, "data"),
	)
	return append(env, extra...)
}

// checkRendered: the Deployment, Job and CronJob of the test chart, none
// of which can set imagePullSecrets, all carry the Secret and mirrored
// images after post-rendering.
func checkRendered(t *testing.T, out []byte) {
	t.Helper()
	docs, err := manifests.ReadStream(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("post-rendered output does not parse: %v\n%s", err, out)
	}
	images, _, err := manifests.Images(docs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"harbor.example.com/dockerhub/library/busybox:1.36", "harbor.example.com/dockerhub/library/nginx:1.27", "harbor.example.com/shop/worker:2.1"}
	if strings.Join(images, ",") != strings.Join(want, ",") {
		t.Errorf("images %v, want %v", images, want)
	}
	workloads := 0
	for _, d := range docs {
		n := d.Node()
		if n == nil || n.GetKind() == "Service" {
			continue
		}
		workloads++
		if !strings.Contains(n.MustString(), "name: regcred-harbor") {
			t.Errorf("%s %s has no imagePullSecrets:\n%s", n.GetKind(), n.GetName(), n.MustString())
		}
	}
	if workloads != 3 || bytes.Count(out, []byte("name: regcred-harbor")) != 3 {
		t.Errorf("want 3 workloads with regcred-harbor, got %d workloads and %d entries:\n%s", workloads, bytes.Count(out, []byte("name: regcred-harbor")), out)
	}
}

var postRenderArgs = []string{"--secret=regcred-harbor=harbor.example.com", "--mirror=docker.io=harbor.example.com/dockerhub"}

func TestHelm3PostRenderer(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	helm := testenv.Tool(t, "helm3")
	bin := regcredBinary(t)
	args := []string{"template", "shop", "testdata/shop", "--post-renderer", bin,
		"--post-renderer-args", "manifests", "--post-renderer-args", "inject"}
	for _, a := range postRenderArgs {
		args = append(args, "--post-renderer-args", a)
	}
	cmd := exec.Command(helm, args...)
	cmd.Env = isolatedHelmEnv(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm 3 template: %v\n%s", err, stderrOf(err))
	}
	checkRendered(t, out)
}

func TestHelm4PostRendererPlugin(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	helm := testenv.Tool(t, "helm4")
	bin := regcredBinary(t)
	plugins := filepath.Join(testenv.RepoRoot(), "plugins")
	args := []string{"template", "shop", "testdata/shop", "--post-renderer", "regcred"}
	for _, a := range postRenderArgs {
		args = append(args, "--post-renderer-args", a)
	}
	cmd := exec.Command(helm, args...)
	cmd.Env = isolatedHelmEnv(t, "HELM_PLUGINS="+plugins, "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm 4 template with the plugin: %v\n%s", err, stderrOf(err))
	}
	checkRendered(t, out)
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
