package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/bench/internal/benchenv"
	"regcred.dev/regcred/bench/internal/stats"
	"regcred.dev/regcred/internal/testenv/controlplane"
)

// bench is the control plane, the managers and the world they keep.
type bench struct {
	dir   string
	bin   string
	cp    *controlplane.ControlPlane
	c     client.Client
	cs    kubernetes.Interface
	audit *auditLog
	w     *world
	// kubeconfigs by manager user; managers by user, running.
	kubeconfigs map[string]string
	managers    map[string]*benchenv.Manager
	nextUser    int
	pprof       map[string]string
	// mu guards managers: the supervisor restarts those that exit.
	mu       sync.Mutex
	restarts []string
	cgroups  map[string]*benchenv.MemoryCgroup
}

// oomKills sums the kernel's OOM kills in the managers' cgroups.
func (b *bench) oomKills() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, g := range b.cgroups {
		n += max(g.OOMKills(), 0)
	}
	return n
}

// supervise restarts a manager that exits on its own, as the kubelet
// restarts its container: a leader cut off from the API server longer
// than its renew deadline stops.
func (b *bench) supervise(ctx context.Context) {
	for ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
		for u, m := range b.running() {
			if !m.Exited() {
				continue
			}
			b.mu.Lock()
			if b.managers[u] != m {
				b.mu.Unlock()
				continue
			}
			delete(b.managers, u)
			b.restarts = append(b.restarts, fmt.Sprintf("%s at %s (%s)", u, time.Now().Format("15:04:05"), lastLine(m.Log())))
			b.mu.Unlock()
			if _, err := b.startAs(u); err != nil {
				fmt.Printf("supervisor: restarting %s: %v\n", u, err)
			}
		}
	}
}

func lastLine(path string) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	l := lines[len(lines)-1]
	if len(l) > 200 {
		l = l[:200]
	}
	return l
}

// running is a snapshot of the running managers.
func (b *bench) running() map[string]*benchenv.Manager {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]*benchenv.Manager, len(b.managers))
	for u, m := range b.managers {
		out[u] = m
	}
	return out
}

// takeRestarts returns and clears the restarts seen so far.
func (b *bench) takeRestarts() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.restarts
	b.restarts = nil
	return r
}

func (b *bench) forget(u string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.managers, u)
}

var managerUsers = []string{"regcred-a", "regcred-b", "regcred-c", "regcred-d", "regcred-e", "regcred-f"}

func newBench(ctx context.Context, dir string) (*bench, error) {
	bin, err := benchenv.BuildRegcred(dir)
	if err != nil {
		return nil, err
	}
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(fmt.Sprintf(auditPolicy, strings.Join(managerUsers, ", "))), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "audit.log")
	cp, err := benchenv.ControlPlane(controlplane.WithAPIServerArg("audit-policy-file", policy),
		controlplane.WithAPIServerArg("audit-log-path", logPath))
	if err != nil {
		return nil, err
	}
	b := &bench{dir: dir, bin: bin, cp: cp, c: cp.Client, cs: kubernetes.NewForConfigOrDie(cp.Config),
		audit: &auditLog{path: logPath}, kubeconfigs: map[string]string{}, managers: map[string]*benchenv.Manager{}, pprof: map[string]string{}, cgroups: map[string]*benchenv.MemoryCgroup{}}
	for _, u := range managerUsers {
		user, err := cp.Env.AddUser(envtest.User{Name: u, Groups: []string{"system:masters"}}, nil)
		if err != nil {
			b.stop()
			return nil, err
		}
		kc, err := user.KubeConfig()
		if err != nil {
			b.stop()
			return nil, err
		}
		b.kubeconfigs[u] = filepath.Join(dir, u+".kubeconfig")
		if err := os.WriteFile(b.kubeconfigs[u], kc, 0o600); err != nil {
			b.stop()
			return nil, err
		}
	}
	b.w = newWorld(b.c, b.cs, *credentials, *delivery)
	return b, nil
}

func (b *bench) stop() {
	for _, m := range b.running() {
		_ = m.Stop()
	}
	for _, g := range b.cgroups {
		_ = g.Remove()
	}
	_ = b.cp.Stop()
}

// setup creates the namespaces and the credentials' sources.
func (b *bench) setup(ctx context.Context) error {
	start := time.Now()
	names, err := benchenv.Namespaces(ctx, b.c, regcredNS, *namespaces, true)
	if err != nil {
		return err
	}
	for _, n := range names {
		b.w.present[n] = true
	}
	for i := range *credentials {
		if err := b.w.writeSource(ctx, i); err != nil {
			return err
		}
	}
	fmt.Printf("setup: %d namespaces with a default ServiceAccount, %d sources, in %s\n", *namespaces, *credentials, time.Since(start).Round(time.Second))
	return nil
}

// startManager starts a manager as the next user, with leader election.
func (b *bench) startManager() (string, *benchenv.Manager, error) {
	b.mu.Lock()
	if b.nextUser == len(managerUsers) {
		b.mu.Unlock()
		return "", nil, fmt.Errorf("out of manager users")
	}
	u := managerUsers[b.nextUser]
	b.nextUser++
	b.mu.Unlock()
	m, err := b.startAs(u)
	return u, m, err
}

func (b *bench) startAs(u string) (*benchenv.Manager, error) {
	// Each replica serves the webhook, as in the chart; on one host each
	// needs its own port and certificate directory.
	wh, err := stats.FreeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(wh)
	flags := []string{"--leader-elect", "--kube-api-qps", fmt.Sprint(*qps), "--kube-api-burst", fmt.Sprint(*burst),
		"--webhook-port", port, "--webhook-cert-dir", filepath.Join(b.dir, u+"-certs")}
	if *pprofDir != "" {
		addr, err := stats.FreeAddr()
		if err != nil {
			return nil, err
		}
		b.mu.Lock()
		b.pprof[u] = addr
		b.mu.Unlock()
		flags = append(flags, "--pprof-bind-address", addr)
	}
	flags = append(flags, strings.Fields(*managerFlags)...)
	var opts benchenv.ManagerOptions
	if *gomemlimit != "" {
		opts.Env = append(opts.Env, "GOMEMLIMIT="+*gomemlimit)
	}
	if *memoryLimit != "" {
		q, err := resource.ParseQuantity(*memoryLimit)
		if err != nil {
			return nil, fmt.Errorf("-memory-limit: %w", err)
		}
		b.mu.Lock()
		g := b.cgroups[u]
		b.mu.Unlock()
		if g == nil {
			if g, err = benchenv.NewMemoryCgroup(fmt.Sprintf("regcred-scale-%d-%s", os.Getpid(), u), q.Value()); err != nil {
				return nil, err
			}
			b.mu.Lock()
			b.cgroups[u] = g
			b.mu.Unlock()
		}
		opts.Cgroup = g
	}
	m, err := benchenv.StartManagerWith(b.bin, b.kubeconfigs[u], regcredNS, b.dir, opts, flags...)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.managers[u] = m
	b.mu.Unlock()
	return m, nil
}

// leader waits until one running manager leads and returns it.
func (b *bench) leader(ctx context.Context, timeout time.Duration) (string, *benchenv.Manager, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for u, m := range b.running() {
			if m.Gauge(`leader_election_master_status{name="regcred-manager"}`) == 1 {
				return u, m, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", nil, fmt.Errorf("no manager leads after %s", timeout)
}

func (b *bench) stopManagers() error {
	for u, m := range b.running() {
		b.forget(u)
		if err := m.Stop(); err != nil {
			return fmt.Errorf("%s: %w", u, err)
		}
	}
	return nil
}

// apply creates the credentials.
func (b *bench) apply(ctx context.Context) error {
	for i := range *credentials {
		cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: credName(i)}}
		cred.Spec.Registries = []string{host(i)}
		cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: sourceName(i)}
		cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"bench": "yes"}}
		if b.w.delivery != "Secrets" {
			cred.Spec.Delivery = v1alpha1.DeliveryMode(b.w.delivery)
		}
		if err := b.c.Create(ctx, cred); err != nil {
			return err
		}
	}
	return nil
}

// statusRight reports whether every credential's status, as kubectl get
// shows it, is Ready with the world's namespace count.
func (b *bench) statusRight(ctx context.Context) bool {
	want := int32(b.w.count())
	for i := range *credentials {
		var cred v1alpha1.ClusterRegistryCredential
		if err := b.c.Get(ctx, client.ObjectKey{Name: credName(i)}, &cred); err != nil {
			return false
		}
		if !meta.IsStatusConditionTrue(cred.Status.Conditions, v1alpha1.ConditionReady) || cred.Status.Namespaces.Desired != want {
			return false
		}
		if b.w.delivery == "Secrets" && cred.Status.Namespaces.Synced != want {
			return false
		}
		if cred.Status.ObservedGeneration != cred.Generation {
			return false
		}
	}
	return true
}

// settle waits until the world is as it should be: the status right and
// every Secret and ServiceAccount checked. It returns when the status
// first looked right, and the problems of the last check when it gives up.
func (b *bench) settle(ctx context.Context, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var problems []string
	for time.Now().Before(deadline) {
		if !b.statusRight(ctx) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		at := time.Now()
		var err error
		problems, err = b.w.check(ctx)
		if err == nil && len(problems) == 0 {
			return at, nil
		}
		if err != nil {
			problems = []string{err.Error()}
		}
		time.Sleep(time.Second)
	}
	return time.Time{}, fmt.Errorf("not converged after %s: %s", timeout, strings.Join(problems, "; "))
}

// statusLag polls the status every 100ms until it is right, for how soon
// it follows the last write.
func (b *bench) statusLag(ctx context.Context, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b.statusRight(ctx) {
			return time.Now(), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("status not right after %s", timeout)
}

func credName(i int) string   { return fmt.Sprintf("cred-%d", i) }
func sourceName(i int) string { return fmt.Sprintf("source-%d", i) }
func host(i int) string       { return fmt.Sprintf("registry-%d.example.com", i) }
func secretName(i int) string { return "regcred-" + credName(i) }

// reportRestarts prints the managers the supervisor restarted.
func (b *bench) reportRestarts() {
	if r := b.takeRestarts(); len(r) > 0 {
		fmt.Printf("managers that exited and were restarted: %s\n", strings.Join(r, "; "))
	}
	if *memoryLimit != "" {
		fmt.Printf("OOM kills so far at the %s limit: %d\n", *memoryLimit, b.oomKills())
	}
}

// heapProfile saves user's heap profile as name in -pprof-dir.
func (b *bench) heapProfile(user, name string) error {
	if *pprofDir == "" {
		return nil
	}
	b.mu.Lock()
	addr := b.pprof[user]
	b.mu.Unlock()
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(*pprofDir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(*pprofDir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
