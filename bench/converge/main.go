// Command converge measures the controller on the local control plane:
// N namespaces × 2 ClusterRegistryCredentials, time to converge, API writes,
// writes made by a resync with nothing changed, latency from a namespace's
// creation to its Secret and patched ServiceAccount, and the manager's RSS
// with and without thousands of unrelated Secrets in the cluster.
//
//	go run ./bench/converge -namespaces 1000 -unrelated 10000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/bench/internal/benchenv"
	"regcred.dev/regcred/bench/internal/parallel"
	"regcred.dev/regcred/bench/internal/stats"
	"regcred.dev/regcred/internal/dockercfg"
)

var (
	namespaces  = flag.Int("namespaces", 1000, "namespaces to fan out to")
	unrelated   = flag.Int("unrelated", 10000, "unrelated 4 KiB Opaque Secrets for the memory comparison (0 skips it)")
	latencyN    = flag.Int("latency-samples", 100, "namespaces created one by one to measure creation-to-ready latency")
	qps         = flag.Int("qps", 200, "manager --kube-api-qps")
	burst       = flag.Int("burst", 400, "manager --kube-api-burst")
	concurrency = flag.Int("concurrency", 4, "manager --concurrency")
)

const regcredNS = "regcred-system"

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "converge: %v\n", err)
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
	bin, err := benchenv.BuildRegcred(dir)
	if err != nil {
		return err
	}

	cp, err := benchenv.ControlPlane()
	if err != nil {
		return err
	}
	defer cp.Stop()
	c := cp.Client

	fmt.Printf("# controller benchmark: %d namespaces x 2 ClusterRegistryCredentials, QPS %d burst %d, concurrency %d\n\n", *namespaces, *qps, *burst, *concurrency)
	start := time.Now()
	names, err := benchenv.Namespaces(ctx, c, regcredNS, *namespaces, true)
	if err != nil {
		return err
	}
	fmt.Printf("setup: %d namespaces with a default ServiceAccount in %s\n", *namespaces, time.Since(start).Round(time.Millisecond))

	for i, host := range []string{"harbor.example.com", "ghcr.io"} {
		data, _ := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{host: {Username: fmt.Sprintf("robot-%d", i), Password: "bench-password"}}}).MarshalDockerConfigJSON()
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNS, Name: fmt.Sprintf("source-%d", i)},
			Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}); err != nil {
			return err
		}
	}

	// Run 1: manager running, credentials applied.
	m, err := benchenv.StartManager(bin, cp.Kubeconfig, regcredNS, dir, managerFlags()...)
	if err != nil {
		return err
	}
	idleRSS := m.RSS()
	t0 := time.Now()
	for i, host := range []string{"harbor.example.com", "ghcr.io"} {
		cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cred-%d", i)}}
		cred.Spec.Registries = []string{host}
		cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: fmt.Sprintf("source-%d", i)}
		cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"bench": "yes"}}
		if err := c.Create(ctx, cred); err != nil {
			return err
		}
	}
	if err := waitConverged(ctx, c, *namespaces); err != nil {
		return err
	}
	converge := time.Since(t0)
	writes, err := syncWrites(m)
	if err != nil {
		return err
	}
	fmt.Printf("\n## converge\n")
	fmt.Printf("time from applying both credentials to every Secret and ServiceAccount in place and both Ready %d/%d: %s\n", *namespaces, *namespaces, converge.Round(time.Millisecond))
	fmt.Printf("API writes by the manager: %s (ideal: %d Secrets created + %d ServiceAccount patches + a few status writes)\n", writes, 2**namespaces, *namespaces)
	settle(m)
	fmt.Printf("manager RSS: %s idle before the credentials, %s after converging (peak %s)\n", benchenv.MiB(idleRSS), benchenv.MiB(m.RSS()), benchenv.MiB(m.HWM()))

	// Latency of a new namespace.
	lat, err := measureLatency(ctx, c, *latencyN)
	if err != nil {
		return err
	}
	fmt.Printf("\n## new namespace -> Secret and patched ServiceAccount (%d samples, one at a time)\n", len(lat))
	fmt.Printf("p50 %s  p90 %s  p99 %s  max %s\n", pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100))
	// Let delayed status updates land before stopping, so the restart
	// below really has nothing to change.
	settle(m)
	time.Sleep(2 * time.Second)
	if err := m.Stop(); err != nil {
		return err
	}

	// Run 2: restart = full resync with nothing changed.
	m, err = benchenv.StartManager(bin, cp.Kubeconfig, regcredNS, dir, managerFlags()...)
	if err != nil {
		return err
	}
	settle(m)
	writes, err = syncWrites(m)
	if err != nil {
		return err
	}
	baseRSS, baseHeap := m.RSS(), m.Heap()
	fmt.Printf("\n## resync with nothing changed (manager restarted, every namespace reconciled again)\n")
	fmt.Printf("API writes: %s\n", writes)
	if err := m.Stop(); err != nil {
		return err
	}

	if *unrelated == 0 {
		return nil
	}
	// Run 3: the same, with many unrelated Secrets in the cluster.
	payload := strings.Repeat("x", 4096)
	idx := make([]string, *unrelated)
	for i := range idx {
		idx[i] = strconv.Itoa(i)
	}
	t1 := time.Now()
	if err := parallel.Each(16, idx, func(s string) error {
		i, _ := strconv.Atoi(s)
		return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: names[i%len(names)], Name: "unrelated-" + s},
			Data: map[string][]byte{"payload": []byte(payload)}})
	}); err != nil {
		return err
	}
	fmt.Printf("\n## memory with %d unrelated 4 KiB Secrets (created in %s)\n", *unrelated, time.Since(t1).Round(time.Millisecond))
	m, err = benchenv.StartManager(bin, cp.Kubeconfig, regcredNS, dir, managerFlags()...)
	if err != nil {
		return err
	}
	settle(m)
	withRSS, withHeap := m.RSS(), m.Heap()
	writes, _ = syncWrites(m)
	fmt.Printf("manager after a resync: RSS %s without them, %s with them (peak %s); Go heap in use %s without, %s with; writes %s\n",
		benchenv.MiB(baseRSS), benchenv.MiB(withRSS), benchenv.MiB(m.HWM()), benchenv.MiB(baseHeap), benchenv.MiB(withHeap), writes)
	return m.Stop()
}

// syncWrites sums regcred_sync_writes_total by operation.
func syncWrites(m *benchenv.Manager) (string, error) {
	total := 0.0
	var parts []string
	err := m.Metrics(func(line string) {
		if !strings.HasPrefix(line, "regcred_sync_writes_total{") {
			return
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		total += v
		op := strings.TrimSuffix(strings.TrimPrefix(f[0], `regcred_sync_writes_total{operation="`), `"}`)
		parts = append(parts, fmt.Sprintf("%s %.0f", op, v))
	})
	if err != nil {
		return "", err
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "0", nil
	}
	return fmt.Sprintf("%.0f (%s)", total, strings.Join(parts, ", ")), nil
}

// settle waits until the manager has made no write for two seconds.
func settle(m *benchenv.Manager) {
	last := ""
	stable := time.Now()
	for time.Since(stable) < 2*time.Second {
		time.Sleep(200 * time.Millisecond)
		w, _ := syncWrites(m)
		if w != last {
			last, stable = w, time.Now()
		}
	}
}

func waitConverged(ctx context.Context, c client.Client, n int) error {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		ready := 0
		for i := range 2 {
			var cred v1alpha1.ClusterRegistryCredential
			if err := c.Get(ctx, client.ObjectKey{Name: fmt.Sprintf("cred-%d", i)}, &cred); err != nil {
				return err
			}
			if meta.IsStatusConditionTrue(cred.Status.Conditions, v1alpha1.ConditionReady) && cred.Status.Namespaces.Synced == int32(n) {
				ready++
			}
		}
		if ready == 2 {
			var sas corev1.ServiceAccountList
			if err := c.List(ctx, &sas, client.MatchingLabels{}); err != nil {
				return err
			}
			patched := 0
			for _, sa := range sas.Items {
				if len(sa.ImagePullSecrets) == 2 {
					patched++
				}
			}
			if patched >= n {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("did not converge")
}

func measureLatency(ctx context.Context, c client.Client, n int) ([]time.Duration, error) {
	var out []time.Duration
	for i := range n {
		ns := fmt.Sprintf("late-%04d", i)
		t0 := time.Now()
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"bench": "yes"}}}); err != nil {
			return nil, err
		}
		if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}); err != nil {
			return nil, err
		}
		for {
			var sa corev1.ServiceAccount
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &sa); err != nil {
				return nil, err
			}
			if len(sa.ImagePullSecrets) == 2 {
				var s corev1.Secret
				if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "regcred-cred-0"}, &s) == nil &&
					c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "regcred-cred-1"}, &s) == nil {
					break
				}
			}
			if time.Since(t0) > time.Minute {
				return nil, fmt.Errorf("namespace %s not ready after a minute", ns)
			}
			time.Sleep(5 * time.Millisecond)
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

func pct(d []time.Duration, p int) time.Duration { return stats.Percentile(d, p, time.Millisecond) }

// managerFlags are the client limits and concurrency the run measures.
func managerFlags() []string {
	return []string{"--kube-api-qps", strconv.Itoa(*qps), "--kube-api-burst", strconv.Itoa(*burst), "--concurrency", strconv.Itoa(*concurrency)}
}
