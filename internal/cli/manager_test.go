package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/testenv"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// regcredBinary builds cmd/regcred once per test run.
func regcredBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "regcred")
		if out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/regcred").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// TestManagerCommand runs `regcred manager` as a process against the
// control plane: it syncs a credential, serves metrics and health, and
// stops cleanly on SIGTERM.
func TestManagerCommand(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	cp := suite.ControlPlane(t)
	bin := regcredBinary(t)
	ctx := context.Background()
	ns := "regcred-cli-manager"
	if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	target, err := cp.CreateNamespace(ctx, "managed", map[string]string{"regcred-cli": "yes"})
	if err != nil {
		t.Fatal(err)
	}
	data := testenv.DockerConfigJSON(t, "r.example.com", "u", "p")
	if err := cp.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "src"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}); err != nil {
		t.Fatal(err)
	}
	cred := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "regcred.dev/v1alpha1", "kind": "ClusterRegistryCredential",
		"metadata": map[string]any{"name": "cli-manager"},
		"spec": map[string]any{
			"registries":        []any{"r.example.com"},
			"source":            map[string]any{"secretRef": map[string]any{"name": "src"}},
			"namespaceSelector": map[string]any{"matchLabels": map[string]any{"regcred-cli": "yes"}},
		},
	}}
	if err := cp.Client.Create(ctx, cred); err != nil {
		t.Fatal(err)
	}

	metricsAddr, probeAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "manager", "--kubeconfig", cp.Kubeconfig, "--namespace", ns,
		"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", probeAddr, "--leader-elect", "--log-format", "console")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	var (
		logMu   sync.Mutex
		logText strings.Builder
	)
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			logMu.Lock()
			logText.WriteString(s.Text() + "\n")
			logMu.Unlock()
		}
	}()
	logs := func() string { logMu.Lock(); defer logMu.Unlock(); return logText.String() }

	defer func() {
		if t.Failed() {
			t.Logf("manager log:\n%s", logs())
		}
	}()
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		var s corev1.Secret
		return cp.Client.Get(ctx, client.ObjectKey{Namespace: target, Name: "regcred-cli-manager"}, &s)
	})

	metricsURL := "http://" + metricsAddr + "/metrics"
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		resp, err := http.Get("http://" + probeAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		resp, err := http.Get(metricsURL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), `regcred_credential_ready{kind="ClusterRegistryCredential",name="cli-manager",namespace=""} 1`) {
			return fmt.Errorf("metrics lack the ready credential")
		}
		return nil
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("manager exited with %v\n%s", err, logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("manager did not stop on SIGTERM\n%s", logs())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
