// Command tenantobjects measures what objects a tenant may write cost the
// manager's memory: one namespace holding ServiceAccounts with large
// annotations and Secrets of any size that carry regcred's label (anyone
// may set it). It starts the local control plane, creates the objects,
// then starts `regcred manager` (its informers list them all at once) and
// reads the manager's RSS and peak RSS from /proc. Everything listens on
// loopback.
//
//	go run ./bench/tenantobjects                      # the tree's manager
//	go run ./bench/tenantobjects -bin /tmp/regcred    # another build of it
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/bench/internal/benchenv"
	"regcred.dev/regcred/bench/internal/parallel"
	"regcred.dev/regcred/bench/internal/stats"
)

var (
	bin             = flag.String("bin", "", "regcred binary to measure (default: build ./cmd/regcred)")
	serviceAccounts = flag.Int("serviceaccounts", 400, "ServiceAccounts in the tenant namespace")
	annotationKiB   = flag.Int("annotation-kib", 250, "size of each ServiceAccount's annotation (the API allows 256 KiB in all)")
	secrets         = flag.Int("secrets", 100, "Secrets labelled regcred.dev/managed=true in the tenant namespace")
	secretKiB       = flag.Int("secret-kib", 1000, "size of each labelled Secret's data (the API allows 1 MiB)")
	settle          = flag.Duration("settle", 150*time.Second, "how long to wait, after the first reading, for the runtime to give back what it freed")
)

const (
	regcredNS = "regcred-system"
	tenantNS  = "tenant"
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "tenantobjects: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "regcred-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	exe, err := binary(dir)
	if err != nil {
		return err
	}
	cp, err := benchenv.ControlPlane()
	if err != nil {
		return err
	}
	defer cp.Stop()
	c := cp.Client
	for _, ns := range []string{regcredNS, tenantNS} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	fmt.Printf("# tenant-written objects: %d ServiceAccounts x %d KiB annotations, %d labelled Secrets x %d KiB, in one namespace\n\n",
		*serviceAccounts, *annotationKiB, *secrets, *secretKiB)

	m, err := startManager(exe, cp.Kubeconfig, dir)
	if err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	idle, idleHWM := m.rss(), m.hwm()
	if err := m.stop(); err != nil {
		return err
	}
	fmt.Printf("manager on an empty cluster: RSS %s (peak %s)\n", mib(idle), mib(idleHWM))

	t0 := time.Now()
	if err := createLoad(ctx, c); err != nil {
		return err
	}
	fmt.Printf("created the objects in %s\n", time.Since(t0).Round(time.Millisecond))

	m, err = startManager(exe, cp.Kubeconfig, dir)
	if err != nil {
		return err
	}
	time.Sleep(15 * time.Second) // initial lists and a reconcile of every namespace
	rss, hwm, heap := m.rss(), m.hwm(), m.heap()
	fmt.Printf("manager with them, 15 s after start: RSS %s, peak %s; Go heap in use %s\n", mib(rss), mib(hwm), mib(heap))
	// The Go runtime forces a collection every 2 minutes and returns the
	// freed memory to the system in the background: what stays is what
	// the cache holds.
	time.Sleep(*settle)
	rss, hwm, heap = m.rss(), m.hwm(), m.heap()
	if err := m.stop(); err != nil {
		return err
	}
	var left corev1.SecretList
	if err := c.List(ctx, &left, client.InNamespace(tenantNS)); err != nil {
		return err
	}
	fmt.Printf("manager with them, %s later: RSS %s, peak %s; Go heap in use %s; labelled Secrets left in place %d of %d\n",
		*settle, mib(rss), mib(hwm), mib(heap), len(left.Items), *secrets)
	return nil
}

// binary is the regcred executable to run: -bin, or one built from the tree.
func binary(dir string) (string, error) {
	if *bin != "" {
		return *bin, nil
	}
	out := filepath.Join(dir, "regcred")
	if b, err := exec.Command("go", "build", "-o", out, "./cmd/regcred").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build regcred (run from the repository root): %v\n%s", err, b)
	}
	return out, nil
}

// createLoad writes what a namespace admin may write.
func createLoad(ctx context.Context, c client.Client) error {
	annotation := strings.Repeat("a", *annotationKiB<<10)
	names := make([]string, *serviceAccounts)
	for i := range names {
		names[i] = fmt.Sprintf("sa-%04d", i)
	}
	if err := parallel.Each(4, names, func(name string) error {
		return c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: name,
			Annotations: map[string]string{"tenant.example.com/blob": annotation}}})
	}); err != nil {
		return err
	}
	payload := []byte(strings.Repeat("s", *secretKiB<<10))
	names = make([]string, *secrets)
	for i := range names {
		names[i] = fmt.Sprintf("labelled-%04d", i)
	}
	return parallel.Each(4, names, func(name string) error {
		return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: name,
			Labels: map[string]string{"regcred.dev/managed": "true"}}, Data: map[string][]byte{"blob": payload}})
	})
}

type managerProc struct {
	cmd                    *exec.Cmd
	metricsAddr, probeAddr string
	log                    *os.File
}

// startManager runs `regcred manager` and waits until it is ready.
func startManager(exe, kubeconfig, dir string) (*managerProc, error) {
	m := &managerProc{metricsAddr: freeAddr(), probeAddr: freeAddr()}
	var err error
	if m.log, err = os.CreateTemp(dir, "manager-*.log"); err != nil {
		return nil, err
	}
	m.cmd = exec.Command(exe, "manager", "--kubeconfig", kubeconfig, "--namespace", regcredNS,
		"--metrics-bind-address", m.metricsAddr, "--health-probe-bind-address", m.probeAddr, "--log-level", "error")
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + m.probeAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = m.stop()
	return nil, fmt.Errorf("manager not ready; log in %s", m.log.Name())
}

func (m *managerProc) stop() error {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	return m.cmd.Wait()
}

func (m *managerProc) procStatus(key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key+":") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func (m *managerProc) rss() int64 { return m.procStatus("VmRSS") }
func (m *managerProc) hwm() int64 { return m.procStatus("VmHWM") }

// heap reads go_memstats_heap_inuse_bytes.
func (m *managerProc) heap() int64 {
	resp, err := http.Get("http://" + m.metricsAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "go_memstats_heap_inuse_bytes ") {
			v, _ := strconv.ParseFloat(strings.Fields(s.Text())[1], 64)
			return int64(v)
		}
	}
	return 0
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func freeAddr() string {
	addr, err := stats.FreeAddr()
	if err != nil {
		panic(err)
	}
	return addr
}
