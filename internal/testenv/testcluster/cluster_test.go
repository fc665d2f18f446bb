package testcluster_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testcluster"
)

// hostSnapshot is what a cluster changes on the host, in a comparable form.
// loadedTables drops from an iptables-save dump the tables that hold only
// built-in chains accepting everything: the first iptables command on a
// fresh machine loads such tables, and they cannot be unloaded, yet they
// change nothing on the host.
func loadedTables(dump string) string {
	var out strings.Builder
	for _, table := range strings.SplitAfter(dump, "COMMIT\n") {
		empty := true
		for _, line := range strings.Split(table, "\n") {
			switch {
			case line == "", line == "COMMIT", strings.HasPrefix(line, "#"), strings.HasPrefix(line, "*"):
			case strings.HasPrefix(line, ":") && strings.Contains(line, " ACCEPT "):
			default:
				empty = false
			}
		}
		if !empty {
			out.WriteString(table)
		}
	}
	return out.String()
}

func hostSnapshot(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	counters := regexp.MustCompile(`\[\d+:\d+\]`)
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(cmd).Output()
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		for _, line := range strings.Split(loadedTables(string(out)), "\n") {
			if !strings.HasPrefix(line, "#") {
				fmt.Fprintln(&b, counters.ReplaceAllString(line, ""))
			}
		}
	}
	for _, s := range []string{"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet"} {
		v, _ := os.ReadFile(filepath.Join("/proc/sys", s))
		fmt.Fprintf(&b, "sysctl %s=%s", s, v)
	}
	for _, p := range []string{"/run/containerd", "/run/nri", "/var/lib/containerd", "/opt/containerd", "/var/lib/cni", "/var/log/containers", "/var/log/pods", "/var/lib/kubelet", "/sys/class/net/regcred0", "/run/regcred-cluster/state.json"} {
		_, err := os.Lstat(p)
		fmt.Fprintf(&b, "exists %s=%v\n", p, err == nil)
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods*")
	fmt.Fprintf(&b, "kubepods cgroups %v\n", cgroups)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.Contains(fields[4], "regcred-cluster") {
			mounts = append(mounts, fields[4])
		}
	}
	sort.Strings(mounts)
	fmt.Fprintf(&b, "mounts %v\n", mounts)
	routes, _ := exec.Command("ip", "route", "show", "table", "all").Output()
	fmt.Fprintf(&b, "routes\n%s", routes)
	procs, _ := exec.Command("pgrep", "-f", "regcred-cluster-").Output()
	fmt.Fprintf(&b, "processes %q\n", strings.Fields(string(procs)))
	return b.String()
}

// TestClusterRestoresHostAfterHarnessDies starts a cluster in a child
// process, runs a Pod on it, and kills the child with SIGKILL: no cleanup
// of its own runs. The next RestoreHost (what the next cluster's start
// does first) puts the host back exactly as it was.
func TestClusterRestoresHostAfterHarnessDies(t *testing.T) {
	if os.Getenv("REGCRED_TEST_CLUSTER_CHILD") == "1" {
		runClusterChild()
		return
	}
	testenv.SkipShort(t, "integration test")
	testcluster.Require(t)
	if err := testcluster.RestoreHost(30 * time.Minute); err != nil {
		t.Fatal(err)
	}
	before := hostSnapshot(t)

	child := exec.Command(os.Args[0], "-test.run=^TestClusterRestoresHostAfterHarnessDies$")
	child.Env = append(os.Environ(), "REGCRED_TEST_CLUSTER_CHILD=1")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	up, runtime := false, ""
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "runtime "); ok {
			runtime = v
		}
		if sc.Text() == "cluster up" {
			up = true
			break
		}
	}
	if !up {
		_ = child.Process.Kill()
		_ = child.Wait()
		t.Fatal("the child's cluster did not come up")
	}
	// The node runs the containerd hack/containerd builds, not Debian's 1.6.
	if !strings.HasPrefix(runtime, "containerd://2.") {
		t.Errorf("the node's container runtime is %q, want containerd 2", runtime)
	}
	during := hostSnapshot(t)
	if during == before {
		t.Fatal("a running cluster left no trace in the snapshot: the test could not see a failure to restore")
	}
	_ = child.Process.Signal(syscall.SIGKILL)
	_ = child.Wait()

	if err := testcluster.RestoreHost(time.Minute); err != nil {
		t.Fatal(err)
	}
	if after := hostSnapshot(t); after != before {
		t.Errorf("the host differs after restoring:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// runClusterChild starts a cluster with a running Pod and waits to be
// killed.
func runClusterChild() {
	cl, err := testcluster.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := cl.RunTestPod(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = cl.Stop()
		os.Exit(1)
	}
	var node corev1.Node
	if err := cl.Client.Get(context.Background(), client.ObjectKey{Name: cl.NodeName}, &node); err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = cl.Stop()
		os.Exit(1)
	}
	fmt.Println("runtime", node.Status.NodeInfo.ContainerRuntimeVersion)
	fmt.Println("cluster up")
	select {}
}
