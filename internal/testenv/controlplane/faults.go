package controlplane

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

// Component is a process of the control plane that a fault run kills and
// starts again.
type Component string

const (
	APIServer Component = "kube-apiserver"
	Etcd      Component = "etcd"
)

// Kill sends SIGKILL to c, as an OOM kill or a node loss would, and waits
// until it is gone. StartAgain brings it back with the same command line:
// the same ports, certificates and data, so clients reconnect as they would
// to a restarted server.
func (cp *ControlPlane) Kill(c Component) error {
	pid, argv, err := cp.find(c)
	if err != nil {
		return err
	}
	if cp.argv == nil {
		cp.argv = map[Component][]string{}
	}
	cp.argv[c] = argv
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s (pid %d): %w", c, pid, err)
	}
	for range 500 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/cmdline", pid)); os.IsNotExist(err) {
			return nil
		}
		if exited(pid) {
			return nil // a zombie until envtest reaps it: dead, its ports closed
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s (pid %d) still running 5s after SIGKILL", c, pid)
}

// exited reports whether pid is a zombie whose every thread is gone. The
// leader of a Go program turns zombie as soon as it exits, while its other
// threads may still be tearing down, and those hold its files: the
// listening sockets close only with the last thread (seen: a server
// started again at once failed with "bind: address already in use").
func exited(pid int) bool {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if !bytes.Contains(b, []byte(") Z ")) {
		return false
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	return len(tasks) <= 1
}

// StartAgain starts a component Kill stopped and waits until it serves.
func (cp *ControlPlane) StartAgain(ctx context.Context, c Component) error {
	argv := cp.argv[c]
	if argv == nil {
		return fmt.Errorf("%s was not killed", c)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Its output goes to a file, so that a restart that never becomes
	// ready can say why.
	logPath := filepath.Join(cp.dir, fmt.Sprintf("%s-restart-%d.log", c, len(cp.restarted)))
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if os.Getenv("REGCRED_TESTENV_VERBOSE") == "1" {
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s again: %w", c, err)
	}
	cp.restarted = append(cp.restarted, cmd)
	delete(cp.argv, c)
	if c == Etcd {
		err = cp.waitEtcd(ctx)
	} else {
		err = cp.WaitReady(ctx)
	}
	// What answered must be the process started here, not another test
	// process's server that took the port meanwhile.
	if err == nil && exited(cmd.Process.Pid) {
		err = errors.New("something else answers on its port")
	}
	if err == nil {
		return nil
	}
	state := "still running"
	if _, statErr := os.Stat(fmt.Sprintf("/proc/%d", cmd.Process.Pid)); statErr != nil || exited(cmd.Process.Pid) {
		state = "exited"
	}
	return fmt.Errorf("%s started again but not ready (%s): %w%s; its output ends:\n%s", c, state, err, cp.readyzReport(c), tail(logPath, 40))
}

// readyzReport is the API server's verbose /readyz, which names the checks
// that fail, or "" for etcd or when it does not answer.
func (cp *ControlPlane) readyzReport(c Component) string {
	if c != APIServer {
		return ""
	}
	hc, err := rest.HTTPClientFor(cp.Config)
	if err != nil {
		return ""
	}
	hc.Timeout = 5 * time.Second
	resp, err := hc.Get(strings.TrimSuffix(cp.Config.Host, "/") + "/readyz?verbose")
	if err != nil {
		return "; /readyz: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	var failing []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "[-]") {
			failing = append(failing, line)
		}
	}
	return fmt.Sprintf("; /readyz %d, failing %v", resp.StatusCode, failing)
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitReady waits until the API server answers /readyz, which includes
// its etcd check.
func (cp *ControlPlane) WaitReady(ctx context.Context) error {
	hc, err := rest.HTTPClientFor(cp.Config)
	if err != nil {
		return err
	}
	return poll(ctx, 2*time.Minute, func() bool {
		resp, err := hc.Get(strings.TrimSuffix(cp.Config.Host, "/") + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (cp *ControlPlane) waitEtcd(ctx context.Context) error {
	return poll(ctx, time.Minute, func() bool {
		resp, err := http.Get(cp.etcdURL() + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func poll(ctx context.Context, timeout time.Duration, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func (cp *ControlPlane) etcdURL() string {
	return strings.TrimSuffix(cp.Env.ControlPlane.Etcd.URL.String(), "/")
}

// Compact compacts etcd's history up to its current revision, as the API
// server does every five minutes: a watch that resumes from an older
// resourceVersion is then answered 410 Gone, and its informer lists again.
// It returns the revision compacted to.
func (cp *ControlPlane) Compact(ctx context.Context) (int64, error) {
	var rng struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	key := base64.StdEncoding.EncodeToString([]byte("/"))
	if err := cp.etcdCall(ctx, "/v3/kv/range", map[string]any{"key": key, "count_only": true}, &rng); err != nil {
		return 0, err
	}
	rev, err := strconv.ParseInt(rng.Header.Revision, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("etcd revision %q: %w", rng.Header.Revision, err)
	}
	if err := cp.etcdCall(ctx, "/v3/kv/compaction", map[string]any{"revision": rev, "physical": true}, nil); err != nil {
		return 0, err
	}
	return rev, nil
}

// etcdCall posts to etcd's JSON gateway.
func (cp *ControlPlane) etcdCall(ctx context.Context, path string, body, out any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cp.etcdURL()+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s: %s: %s", path, resp.Status, data)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// find is the pid and command line of c: the process of that binary whose
// arguments name this control plane's certificate or data directory.
func (cp *ControlPlane) find(c Component) (int, []string, error) {
	var marker string
	switch c {
	case APIServer:
		marker = cp.Env.ControlPlane.APIServer.CertDir
	case Etcd:
		marker = cp.Env.ControlPlane.Etcd.DataDir
	default:
		return 0, nil, fmt.Errorf("unknown component %q", c)
	}
	if marker == "" {
		return 0, nil, fmt.Errorf("%s: no directory to find it by", c)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if filepath.Base(argv[0]) != string(c) || !strings.Contains(string(b), marker) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		return pid, argv, nil
	}
	return 0, nil, fmt.Errorf("no running %s of this control plane", c)
}

// stopRestarted stops what StartAgain started, before envtest stops the
// rest.
func (cp *ControlPlane) stopRestarted() {
	for _, cmd := range cp.restarted {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	cp.restarted = nil
}

// PID is the process of a component of this control plane (for load
// tools that read its CPU time).
func (cp *ControlPlane) PID(c Component) (int, error) {
	pid, _, err := cp.find(c)
	return pid, err
}
