package testcluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// A real node changes the host: sysctls, iptables chains, cgroups, mounts,
// a bridge, files under /run and /var. hostState records what was there
// before a cluster started and puts it back when the cluster stops. It is
// written to hostStateDir, so that when a harness dies without stopping
// its cluster (a test binary killed by its timeout), the next cluster to
// start restores the host first.
//
// One cluster at a time runs on a host: kube-proxy's and the kubelet's
// iptables chains have fixed names, so two would fight over them. The lock
// (an flock, released by the kernel when its holder dies) serializes them.
type hostState struct {
	Owner            int    `json:"owner"`
	Dir              string `json:"dir"`
	ContainerdSocket string `json:"containerdSocket"`
	Bridge           string `json:"bridge"`
	// BlackholeRoute is what harnesses before the local route added.
	BlackholeRoute string            `json:"blackholeRoute,omitempty"`
	LocalRoute     string            `json:"localRoute,omitempty"`
	Sysctls        map[string]string `json:"sysctls"`
	IPTables       map[string]string `json:"iptables"` // command -> saved dump
	Created        []string          `json:"created"`  // paths that did not exist before

	lock *os.File
}

const (
	hostStateDir  = "/run/regcred-cluster"
	hostStateFile = hostStateDir + "/state.json"
	hostLockFile  = "/run/regcred-cluster.lock"
)

// Sysctls the kubelet, kube-proxy and the CNI bridge plugin set.
var touchedSysctls = []string{
	"kernel/panic",
	"kernel/panic_on_oops",
	"vm/overcommit_memory",
	"net/ipv4/ip_forward",
	"net/ipv4/conf/all/route_localnet",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
}

// Paths outside the cluster's directory that containerd, the CNI plugins
// and the kubelet create when missing.
var touchedPaths = []string{
	"/run/containerd",
	"/var/lib/cni",
	"/var/log/containers",
	"/var/log/pods",
	"/var/lib/kubelet",
}

// claimHost takes the host lock, waiting up to wait for another cluster to
// stop, restores what a dead harness left, and records the host as it is.
func claimHost(dir, containerdSocket, bridge string, wait time.Duration) (*hostState, error) {
	if err := os.MkdirAll(hostStateDir, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(hostLockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			_ = lock.Close()
			return nil, fmt.Errorf("another regcred test cluster holds %s: %w", hostLockFile, err)
		}
		time.Sleep(time.Second)
	}
	if b, err := os.ReadFile(hostStateFile); err == nil {
		var stale hostState
		if err := json.Unmarshal(b, &stale); err == nil {
			if err := stale.restore(); err != nil {
				_ = lock.Close()
				return nil, fmt.Errorf("restore the host after a cluster whose harness died: %w", err)
			}
		}
		_ = os.Remove(hostStateFile)
	}

	// A kubelet that is not ours would share the kubepods cgroups and the
	// iptables chains with the test node, and restoring the host would
	// take its Pods down with ours.
	if kubepods, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods*"); len(kubepods) > 0 && dir != "" {
		_ = lock.Close()
		return nil, fmt.Errorf("this machine already runs a kubelet (%s exists): a test node would share its cgroups and iptables chains", kubepods[0])
	}
	h := &hostState{Owner: os.Getpid(), Dir: dir, ContainerdSocket: containerdSocket, Bridge: bridge,
		Sysctls: map[string]string{}, IPTables: map[string]string{}, lock: lock}
	for _, s := range touchedSysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", s)); err == nil {
			h.Sysctls[s] = strings.TrimSpace(string(b))
		}
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		out, err := exec.Command(cmd + "-save").Output()
		if err != nil {
			_ = h.release()
			return nil, fmt.Errorf("%s-save: %w", cmd, err)
		}
		h.IPTables[cmd] = string(out)
	}
	for _, p := range touchedPaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			h.Created = append(h.Created, p)
		}
	}
	if err := h.save(); err != nil {
		_ = h.release()
		return nil, err
	}
	return h, nil
}

func (h *hostState) save() error {
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(hostStateFile, b, 0o600)
}

// restore stops whatever of the cluster still runs and puts the host back
// as it was recorded, doing as much as it can and reporting what failed.
func (h *hostState) restore() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	// Every program started for the cluster names its directory (or its
	// containerd socket, for the shims) on its command line.
	if h.Dir != "" {
		add(killByCommandLine(h.Dir))
	}
	if h.ContainerdSocket != "" {
		add(killByCommandLine(h.ContainerdSocket))
	}
	add(unmountUnder(h.Dir))
	add(removeKubepodsCgroups())
	for cmd, dump := range h.IPTables {
		add(restoreIPTables(cmd, dump))
	}
	if h.Bridge != "" {
		if _, err := os.Stat(filepath.Join("/sys/class/net", h.Bridge)); err == nil {
			if out, err := exec.Command("ip", "link", "delete", h.Bridge).CombinedOutput(); err != nil {
				add(fmt.Errorf("delete bridge %s: %v: %s", h.Bridge, err, out))
			}
		}
	}
	if h.LocalRoute != "" {
		_ = exec.Command("ip", "route", "delete", "local", h.LocalRoute, "dev", "lo").Run()
	}
	if h.BlackholeRoute != "" {
		_ = exec.Command("ip", "route", "delete", "blackhole", h.BlackholeRoute).Run()
	}
	for s, v := range h.Sysctls {
		path := filepath.Join("/proc/sys", s)
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) != v {
			add(os.WriteFile(path, []byte(v), 0o644))
		}
	}
	// Files left in places the cluster created, and links into its
	// directory in places it did not.
	for _, p := range h.Created {
		add(unmountUnder(p))
		add(os.RemoveAll(p))
	}
	if entries, err := os.ReadDir("/var/log/containers"); err == nil {
		for _, e := range entries {
			link := filepath.Join("/var/log/containers", e.Name())
			if target, err := os.Readlink(link); err == nil && strings.HasPrefix(target, h.Dir) {
				add(os.Remove(link))
			}
		}
	}
	add(os.RemoveAll(h.Dir))
	return errors.Join(errs...)
}

// release restores the host and gives up the lock.
func (h *hostState) release() error {
	err := h.restore()
	if err == nil {
		_ = os.Remove(hostStateFile)
	}
	if h.lock != nil {
		_ = h.lock.Close()
	}
	return err
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	if dir == "" || dir == "/" {
		return nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeKubepodsCgroups kills what still runs in the kubelet's cgroup trees
// (containers whose shim is gone) and removes the trees, children first,
// in every hierarchy (cgroup v1 controllers and the unified one).
func removeKubepodsCgroups() error {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods*")
	if more, _ := filepath.Glob("/sys/fs/cgroup/kubepods*"); len(more) > 0 {
		roots = append(roots, more...)
	}
	var dirs []string
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	// Processes exit asynchronously after SIGKILL: wait until the trees
	// are empty.
	deadline := time.Now().Add(30 * time.Second)
	for {
		alive := 0
		for _, d := range dirs {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				var pid int
				if _, err := fmt.Sscanf(f, "%d", &pid); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					alive++
				}
			}
		}
		if alive == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var errs []error
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// restoreIPTables puts back a saved dump: the tables it lists are replaced
// whole, and tables it does not list are emptied of what was added since.
func restoreIPTables(cmd, dump string) error {
	restore := exec.Command(cmd + "-restore")
	restore.Stdin = strings.NewReader(dump)
	if out, err := restore.CombinedOutput(); err != nil {
		return fmt.Errorf("%s-restore: %v: %s", cmd, err, out)
	}
	for _, table := range []string{"filter", "nat", "mangle"} {
		if strings.Contains(dump, "*"+table+"\n") {
			continue
		}
		_ = exec.Command(cmd, "-t", table, "-F").Run()
		_ = exec.Command(cmd, "-t", table, "-X").Run()
	}
	return nil
}

// RestoreHost restores what a cluster whose harness died left on the host,
// waiting up to wait for a running cluster to stop first. Nothing to do is
// not an error.
func RestoreHost(wait time.Duration) error {
	h, err := claimHost("", "", "", wait)
	if err != nil {
		return err
	}
	_ = os.Remove(hostStateFile)
	if h.lock != nil {
		_ = h.lock.Close()
	}
	return nil
}
