package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"regcred.dev/regcred/internal/testenv"
)

// TestDemoPrintsWorkingInstructions runs the demo as `make demo` does and
// executes the kubectl and skopeo commands it prints.
func TestDemoPrintsWorkingInstructions(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	if err := testenv.CheckAssets(); err != nil {
		if testenv.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "demo")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build demo: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--state-dir", filepath.Join(dir, "state"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()

	var commands, printed []string
	scanner := bufio.NewScanner(stdout)
	ready := false
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line == "ready" {
			ready = true
			break
		}
		if strings.HasPrefix(line, "image:") || strings.HasPrefix(line, "imagePullSecrets:") {
			printed = append(printed, line)
		}
		if strings.HasPrefix(line, "kubectl ") || strings.HasPrefix(line, "skopeo ") || strings.HasPrefix(line, "export ") {
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

	script := strings.Join(commands, "\n")
	needs := []string{"export KUBECONFIG=", "kubectl get clusterregistrycredentials", "kubectl create namespace team-c", "kubectl run web -n cafe", "skopeo inspect"}
	for _, n := range needs {
		if !strings.Contains(script, n) {
			t.Fatalf("demo instructions lack %q:\n%s", n, script)
		}
	}
	if _, err := exec.LookPath("skopeo"); err != nil && !testenv.Required() {
		t.Skip("skopeo not installed: run make tools")
	}
	// The namespace created by the instructions is reconciled in the
	// background: give the ServiceAccount read a moment, as a person would.
	getBuilder := `kubectl get serviceaccount builder -n team-c -o jsonpath='{.imagePullSecrets}{"\n"}'`
	if !strings.Contains(script, getBuilder) {
		t.Fatalf("demo instructions lack %q", getBuilder)
	}
	script = strings.Replace(script, getBuilder,
		`for i in $(seq 1 120); do out=$(`+getBuilder+`); [ -n "$(echo $out)" ] && break; sleep 0.25; done; echo "$out"`, 1)
	out, err := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("running the printed instructions failed: %v\n%s\n---\n%s", err, script, out)
	}
	// The demo's own first Pod in a brand-new namespace.
	shown := strings.Join(printed, "\n")
	if !regexp.MustCompile(`image:\s+127\.0\.0\.1:\d+/dockerhub/library/nginx:1\.27`).MatchString(shown) ||
		!strings.Contains(shown, "imagePullSecrets: [regcred-demo-registry]") {
		t.Errorf("the demo's first Pod was not rewritten and injected:\n%s", shown)
	}
	// The Pod the instructions create in another new namespace.
	if !regexp.MustCompile(`127\.0\.0\.1:\d+/dockerhub/library/redis:7 \[\{"name":"regcred-demo-registry"\}\]`).MatchString(string(out)) {
		t.Errorf("kubectl run in a new namespace did not come back rewritten and injected:\n%s", out)
	}
	if !regexp.MustCompile(`demo-registry\s+True\s+\d+/\d+`).MatchString(string(out)) {
		t.Errorf("kubectl get clusterregistrycredentials does not show Ready and 3/3 (default, team-a, team-b):\n%s", out)
	}
	for _, want := range []string{
		"kubernetes.io/dockerconfigjson",     // the synced Secret in team-a
		`[{"name":"regcred-demo-registry"}]`, // team-b's default ServiceAccount
		`"Digest": "sha256:`,                 // skopeo through the registry
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output of the printed instructions lacks %q:\n%s", want, out)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("demo did not exit cleanly on Ctrl-C: %v", err)
	}
}
