// Command manifests measures `regcred manifests inject` on a large stream:
// documents per second and peak memory (max RSS) of the real binary.
//
//	go run ./bench/manifests -documents 10000
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

var (
	documents = flag.Int("documents", 10000, "documents in the stream")
	runs      = flag.Int("runs", 3, "runs to report")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "manifests bench: %v\n", err)
		os.Exit(1)
	}
}

// stream mixes workloads of every kind with ConfigMaps and Services, as a
// large rendered chart or a cluster export does.
func stream(n int) string {
	kinds := []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-%d\n  labels: {app: web}\nspec:\n  replicas: 2\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      initContainers:\n      - name: init\n        image: harbor.internal/team/init:%d\n      containers:\n      - name: web\n        image: nginx:1.27\n        ports: [{containerPort: 80}]\n      - name: side\n        image: ghcr.io/acme/side:%d\n",
		"# a comment\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg-%d\ndata:\n  key: value-%d\n  other: %d\n",
		"apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: job-%d\nspec:\n  schedule: \"0 3 * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - name: job\n            image: harbor.internal/team/job:%d\n          restartPolicy: OnFailure # %d\n",
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-%d\nspec:\n  selector: {app: web}\n  ports: [{port: %d, targetPort: %d}]\n",
	}
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, kinds[i%len(kinds)], i, i, i)
	}
	return b.String()
}

func run() error {
	dir, err := os.MkdirTemp("", "regcred-manifests-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "regcred")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/regcred").CombinedOutput(); err != nil {
		return fmt.Errorf("build (run from the repository root): %v\n%s", err, out)
	}
	in := filepath.Join(dir, "in.yaml")
	data := stream(*documents)
	if err := os.WriteFile(in, []byte(data), 0o644); err != nil {
		return err
	}
	fmt.Printf("# regcred manifests inject --mirror docker.io=... --secret x3 over %d documents (%.1f MiB)\n\n", *documents, float64(len(data))/(1<<20))
	fmt.Println("| run | time | documents/s | max RSS |")
	fmt.Println("|---|---|---|---|")
	for r := 1; r <= *runs; r++ {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		out, err := os.Create(filepath.Join(dir, "out.yaml"))
		if err != nil {
			return err
		}
		cmd := exec.Command(bin, "manifests", "inject", "--quiet",
			"--mirror", "docker.io=harbor.internal/dockerhub",
			"--secret", "regcred-harbor=harbor.internal", "--secret", "regcred-ghcr=ghcr.io/acme", "--secret", "regcred-quay=quay.io")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = f, out, os.Stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return err
		}
		el := time.Since(start)
		_ = f.Close()
		_ = out.Close()
		maxRSS := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024
		fmt.Printf("| %d | %s | %.0f | %.1f MiB |\n", r, el.Round(time.Millisecond), float64(*documents)/el.Seconds(), float64(maxRSS)/(1<<20))
	}
	b, err := os.ReadFile(filepath.Join(dir, "out.yaml"))
	if err != nil {
		return err
	}
	if got := strings.Count(string(b), "- name: regcred-harbor"); got != *documents/2 {
		return fmt.Errorf("expected %d injected workloads, found %d", *documents/2, got)
	}
	return nil
}
