package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testcluster"
)

// TestDemoPullsForReal runs the demo as `make demo` does, checks the story
// it tells against the kubelet's own results, executes the kubectl
// commands it prints, and stops it with Ctrl-C with its output piped.
func TestDemoPullsForReal(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	testcluster.Require(t)
	kubectl := testenv.Tool(t, "kubectl")
	dir := t.TempDir()
	bin := filepath.Join(dir, "demo")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build demo: %v\n%s", err, out)
	}

	// Generous: another package's cluster may hold the host for a while.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--state-dir", filepath.Join(dir, "state"))
	// SIGTERM rather than SIGKILL if the deadline passes, so the demo
	// still restores the host.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// `make demo 2>&1 | tee demo.log`: both go to a pipe, which Ctrl-C
	// closes (tee dies too) before the demo restores the host.
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(os.Stderr, stderr) }()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	defer func() {
		if !exited {
			_ = cmd.Process.Signal(syscall.SIGINT)
			_ = cmd.Wait()
		}
	}()

	var lines, commands []string
	scanner := bufio.NewScanner(stdout)
	ready := false
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line == "ready" {
			ready = true
			break
		}
		lines = append(lines, line)
		if strings.HasPrefix(line, "kubectl ") || strings.HasPrefix(line, "export ") {
			commands = append(commands, line)
		}
	}
	if !ready {
		t.Fatalf("demo exited before printing ready (err %v)", scanner.Err())
	}
	go func() {
		for scanner.Scan() {
		}
	}()
	story := strings.Join(lines, "\n")
	t.Logf("the demo says:\n%s", story)
	for _, re := range []string{
		`pod/web-\S+\s+(ErrImagePull|ImagePullBackOff): Failed to pull image "127\.0\.0\.1:\d+/shop/web:1\.0".*authorization failed: no basic auth credentials`,
		`kind: ClusterRegistryCredential`,
		`Unauthorized \(PodPredatesCredential\): ClusterRegistryCredential private-registry covers this image, but the Pod was created before the credential`,
		`fix: kubectl -n shop rollout restart deployment/web`,
		`pod/web-\S+\s+Running \S+ later, imagePullSecrets \[regcred-private-registry\]`,
	} {
		if !regexp.MustCompile(re).MatchString(story) {
			t.Errorf("the story lacks %s:\n%s", re, story)
		}
	}

	script := strings.Join(commands, "\n")
	for _, n := range []string{"export KUBECONFIG=", "kubectl create namespace cafe", "kubectl wait pod -n cafe", "kubectl run cache -n cafe"} {
		if !strings.Contains(script, n) {
			t.Fatalf("demo instructions lack %q:\n%s", n, script)
		}
	}
	// A person waits for the Pod kubectl run made before reading it.
	getCache := `kubectl get pod cache -n cafe`
	script = strings.Replace(script, getCache, `kubectl wait pod cache -n cafe --for=condition=Ready --timeout=60s && `+getCache, 1)
	run := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	run.Env = append(os.Environ(), "PATH="+filepath.Dir(kubectl)+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("running the printed instructions failed: %v\n%s\n---\n%s", err, script, out)
	}
	for _, re := range []string{
		`private-registry\s+True\s+\d+/\d+`, // Ready, synced
		`web-\S+\s+1/1\s+Running`,           // the shop Pod
		`kubernetes.io/dockerconfigjson`,    // the synced Secret
		`pod/web-\S+ condition met`,         // a new namespace's Deployment runs
		`127\.0\.0\.1:\d+/dockerhub/library/redis:7 \[\{"name":"regcred-private-registry"\}\]`, // mirrored, injected
		`pod/cache condition met`, // and pulled from the mirror
	} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("output of the printed instructions lacks %s:\n%s", re, out)
		}
	}

	_ = stdout.Close()
	_ = stderr.Close()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	exited = true
	if err != nil {
		t.Errorf("demo did not exit cleanly on Ctrl-C: %v", err)
	}
	// Another package's cluster may hold the host by now: look for the
	// demo's own.
	m := regexp.MustCompile(`the cluster's programs (/\S+)`).FindStringSubmatch(story)
	if m == nil {
		t.Fatalf("the demo does not say where its cluster lives:\n%s", story)
	}
	if _, err := os.Stat(m[1]); err == nil {
		t.Errorf("the demo left its cluster directory %s", m[1])
	}
	if b, err := os.ReadFile("/run/regcred-cluster/state.json"); err == nil && strings.Contains(string(b), m[1]) {
		t.Errorf("the demo left its host state record: the host was not restored:\n%s", b)
	}
	fmt.Fprintln(os.Stderr, "demo stopped")
}
