package benchenv

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MemoryCgroup is a memory cgroup a load tool puts a manager in, limited
// as the chart's container limit limits it: the kernel kills a process
// that goes over, and the manager reads the limit at start (GOMEMLIMIT).
// It is made under this process's own memory cgroup, v1 or v2.
type MemoryCgroup struct {
	Dir string
}

// NewMemoryCgroup makes a child cgroup named name limited to limit bytes.
func NewMemoryCgroup(name string, limit int64) (*MemoryCgroup, error) {
	parent, v2, err := ownMemoryCgroup()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("make memory cgroup (needs root): %w", err)
	}
	file := "memory.limit_in_bytes"
	if v2 {
		file = "memory.max"
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("limit memory cgroup: %w", err)
	}
	return &MemoryCgroup{Dir: dir}, nil
}

// Wrap returns a command line that joins the cgroup, then runs argv, so
// the process starts inside it.
func (g *MemoryCgroup) Wrap(argv []string) []string {
	return append([]string{"/bin/sh", "-c", `echo $$ > "$0/cgroup.procs" && shift && exec "$@"`, g.Dir, "--"}, argv...)
}

// OOMKills is how often the kernel killed a process of the cgroup for
// memory; -1 when it does not say.
func (g *MemoryCgroup) OOMKills() int {
	for _, f := range []string{"memory.events", "memory.oom_control"} {
		b, err := os.ReadFile(filepath.Join(g.Dir, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && k == "oom_kill" {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
	}
	return -1
}

// Remove removes the cgroup once its processes are gone.
func (g *MemoryCgroup) Remove() error { return os.Remove(g.Dir) }

// ownMemoryCgroup is the directory of this process's memory cgroup.
func ownMemoryCgroup() (string, bool, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	var v2path string
	for s.Scan() {
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				return filepath.Join("/sys/fs/cgroup/memory", parts[2]), false, nil
			}
		}
		if parts[0] == "0" && parts[1] == "" {
			v2path = parts[2]
		}
	}
	if v2path != "" {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
			return filepath.Join("/sys/fs/cgroup", v2path), true, nil
		}
	}
	return "", false, fmt.Errorf("no memory cgroup found in /proc/self/cgroup")
}
