package benchenv

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"regcred.dev/regcred/bench/internal/stats"
)

// BuildRegcred builds cmd/regcred into dir (run from the repository root).
func BuildRegcred(dir string) (string, error) {
	out := filepath.Join(dir, "regcred")
	if b, err := exec.Command("go", "build", "-o", out, "./cmd/regcred").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build regcred (run from the repository root): %v\n%s", err, b)
	}
	return out, nil
}

// Manager is a `regcred manager` process of a load tool: its own metrics
// and probe ports, its log in a file.
type Manager struct {
	cmd         *exec.Cmd
	MetricsAddr string
	probeAddr   string
	log         *os.File
	done        chan struct{}
	err         error
}

// StartManager runs `bin manager` against kubeconfig with regcred's
// namespace and extra flags, logging errors only into a file in dir, and
// waits until it is ready.
func StartManager(bin, kubeconfig, namespace, dir string, flags ...string) (*Manager, error) {
	return StartManagerWith(bin, kubeconfig, namespace, dir, ManagerOptions{}, flags...)
}

// ManagerOptions are how a load tool runs a manager beyond its flags.
type ManagerOptions struct {
	// Env adds environment variables (GOMEMLIMIT, say).
	Env []string
	// Cgroup, when set, is where the process runs, limited.
	Cgroup *MemoryCgroup
}

// StartManagerWith is StartManager with opts.
func StartManagerWith(bin, kubeconfig, namespace, dir string, opts ManagerOptions, flags ...string) (*Manager, error) {
	metrics, err := stats.FreeAddr()
	if err != nil {
		return nil, err
	}
	probe, err := stats.FreeAddr()
	if err != nil {
		return nil, err
	}
	m := &Manager{MetricsAddr: metrics, probeAddr: probe}
	if m.log, err = os.CreateTemp(dir, "manager-*.log"); err != nil {
		return nil, err
	}
	args := append([]string{"manager", "--kubeconfig", kubeconfig, "--namespace", namespace,
		"--metrics-bind-address", m.MetricsAddr, "--health-probe-bind-address", m.probeAddr, "--log-level", "error"}, flags...)
	argv := append([]string{bin}, args...)
	if opts.Cgroup != nil {
		argv = opts.Cgroup.Wrap(argv)
	}
	m.cmd = exec.Command(argv[0], argv[1:]...)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	m.cmd.Env = append(os.Environ(), opts.Env...)
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	m.done = make(chan struct{})
	go func() { m.err = m.cmd.Wait(); close(m.done) }()
	if err := m.waitReady(2 * time.Minute); err != nil {
		_ = m.Stop()
		return nil, err
	}
	return m, nil
}

func (m *Manager) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + m.probeAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("manager not ready; log in %s", m.log.Name())
}

// Stop sends SIGTERM and waits for the process.
func (m *Manager) Stop() error {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	<-m.done
	return m.err
}

// Exited reports whether the process has ended on its own (a leader that
// lost its lease stops, and its Pod would restart).
func (m *Manager) Exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL, as an OOM kill or a lost node would, and waits.
func (m *Manager) Kill() {
	_ = m.cmd.Process.Kill()
	<-m.done
}

// Log is the path of the manager's log.
func (m *Manager) Log() string { return m.log.Name() }

// Gauge reads one unlabelled (or fully spelled) series from the
// manager's metrics; -1 when it is absent.
func (m *Manager) Gauge(series string) float64 {
	v := -1.0
	_ = m.Metrics(func(line string) {
		if strings.HasPrefix(line, series+" ") {
			v, _ = strconv.ParseFloat(strings.Fields(line)[len(strings.Fields(line))-1], 64)
		}
	})
	return v
}

// SumGauges adds up the series whose line starts with prefix (a metric
// name and some of its labels); -1 when there is none.
func (m *Manager) SumGauges(prefix string) float64 {
	sum, found := 0.0, false
	_ = m.Metrics(func(line string) {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				sum, found = sum+v, true
			}
		}
	})
	if !found {
		return -1
	}
	return sum
}

// RSS and HWM (peak RSS) of the process, from /proc.
func (m *Manager) RSS() int64 { return m.procStatus("VmRSS") }
func (m *Manager) HWM() int64 { return m.procStatus("VmHWM") }

// RSSAnon is the resident memory the process allocated; RSSFile its
// resident file pages (the binary), which the kernel can drop and read
// again.
func (m *Manager) RSSAnon() int64 { return m.procStatus("RssAnon") }
func (m *Manager) RSSFile() int64 { return m.procStatus("RssFile") }

func (m *Manager) procStatus(key string) int64 {
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

// Heap reads go_memstats_heap_inuse_bytes from the manager's metrics.
func (m *Manager) Heap() int64 {
	v := 0.0
	_ = m.Metrics(func(line string) {
		if strings.HasPrefix(line, "go_memstats_heap_inuse_bytes ") {
			v, _ = strconv.ParseFloat(strings.Fields(line)[1], 64)
		}
	})
	return int64(v)
}

// Metrics calls each with every line of the manager's /metrics.
func (m *Manager) Metrics(each func(line string)) error {
	resp, err := http.Get("http://" + m.MetricsAddr + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		each(s.Text())
	}
	return s.Err()
}

// MiB formats a byte count.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
