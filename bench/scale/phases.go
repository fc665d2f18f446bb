package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/bench/internal/benchenv"
	"regcred.dev/regcred/internal/testenv/controlplane"
)

// converge applies the credentials with a leader and a standby running,
// kills the API server partway, and measures the fan-out.
func (b *bench) converge(ctx context.Context) error {
	if _, _, err := b.startManager(); err != nil {
		return err
	}
	if _, _, err := b.startManager(); err != nil {
		return err
	}
	lu, lm, err := b.leader(ctx, time.Minute)
	if err != nil {
		return err
	}
	idle := lm.RSS()
	t := newTally()
	if err := b.audit.read(t); err != nil {
		return err
	}
	t = newTally()
	t0 := time.Now()
	if err := b.apply(ctx); err != nil {
		return err
	}
	var downtime time.Duration
	killed := make(chan error, 1)
	if *killAfter > 0 {
		go func() {
			time.Sleep(*killAfter)
			k0 := time.Now()
			if err := b.cp.Kill(controlplane.APIServer); err != nil {
				killed <- err
				return
			}
			time.Sleep(*down)
			err := b.cp.StartAgain(ctx, controlplane.APIServer)
			downtime = time.Since(k0)
			killed <- err
		}()
	} else {
		killed <- nil
	}
	if err := <-killed; err != nil {
		return err
	}
	statusAt, err := b.settle(ctx, 30*time.Minute)
	if err != nil {
		return err
	}
	if err := b.audit.read(t); err != nil {
		return err
	}
	n := b.w.count()
	minimum := 0
	if b.w.delivery != "Node" {
		minimum = n*b.w.creds + n // one per Secret, one per ServiceAccount
	}
	bound, which := t.limiterBound(*qps, *burst)
	fmt.Printf("\n## converge (leader %s, a standby; API server killed %s in, down %s)\n", lu, *killAfter, downtime.Round(100*time.Millisecond))
	done := t.lastWrite
	if statusAt.After(done) {
		done = statusAt
	}
	conv := done.Sub(t0)
	fmt.Printf("converged in %s (last write %s after applying; status right %s after the last write)\n",
		conv.Round(100*time.Millisecond), t.lastWrite.Sub(t0).Round(100*time.Millisecond), statusAt.Sub(t.lastWrite).Round(100*time.Millisecond))
	fmt.Printf("rate-limit bound: %s for %s at QPS %d burst %d, plus %s down = %s; converged at %.2fx of it\n",
		bound.Round(100*time.Millisecond), which, *qps, *burst, downtime.Round(100*time.Millisecond), (bound + downtime).Round(100*time.Millisecond),
		float64(conv)/float64(bound+downtime))
	fmt.Printf("writes: %s\n", t)
	if minimum > 0 {
		fmt.Printf("minimum %d (one per Secret, one per ServiceAccount): %+.2f%%; Secrets written more than once: %d\n",
			minimum, 100*float64(t.writes-minimum)/float64(minimum), t.duplicates(1))
	}
	fmt.Printf("reads by the managers: %s\n", t.readSummary())
	fmt.Printf("leader %s RSS before the fan-out: %s\n", lu, benchenv.MiB(idle))
	now, _, err := b.leader(ctx, time.Minute)
	if err != nil {
		return err
	}
	if now != lu {
		fmt.Printf("%s lost the lead during the fan-out; %s leads at the end\n", lu, now)
	}
	b.reportMemory(now)
	b.reportRestarts()
	return b.heapProfile(now, "converge.heap")
}

// reportMemory prints each running manager's memory: the leader first.
func (b *bench) reportMemory(leader string) {
	running := b.running()
	users := []string{leader}
	for u := range running {
		if u != leader {
			users = append(users, u)
		}
	}
	for _, u := range users {
		m, ok := running[u]
		if !ok {
			continue
		}
		role := "standby"
		if u == leader {
			role = "leader"
		}
		fmt.Printf("%s %s: RSS %s (anonymous %s, the binary's pages %s), peak %s; Go heap in use %s; goroutines %.0f\n",
			role, u, benchenv.MiB(m.RSS()), benchenv.MiB(m.RSSAnon()), benchenv.MiB(m.RSSFile()), benchenv.MiB(m.HWM()),
			benchenv.MiB(m.Heap()), m.Gauge("go_goroutines"))
	}
}

// restart stops every manager and starts one with everything in place.
func (b *bench) restart(ctx context.Context) error {
	if err := b.stopManagers(); err != nil {
		return err
	}
	t := newTally()
	if err := b.audit.read(t); err != nil {
		return err
	}
	t = newTally()
	t0 := time.Now()
	u, m, err := b.startManager()
	if err != nil {
		return err
	}
	ready := time.Since(t0)
	if _, _, err := b.leader(ctx, time.Minute); err != nil {
		return err
	}
	led := time.Since(t0)
	// Every namespace reconciled once (the resync of a restart).
	want := float64(b.w.count())
	for m.Gauge(`controller_runtime_reconcile_total{controller="namespace",result="success"}`) < want {
		if time.Since(t0) > 10*time.Minute {
			return fmt.Errorf("namespaces not all reconciled after 10 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	resynced := time.Since(t0)
	if _, err := b.settle(ctx, 5*time.Minute); err != nil {
		return err
	}
	time.Sleep(5 * time.Second) // delayed status writes, if any
	if err := b.audit.read(t); err != nil {
		return err
	}
	fmt.Printf("\n## restart with everything in place (%s)\n", u)
	fmt.Printf("ready (caches synced, /readyz) %s after start; leading %s; every namespace reconciled %s\n",
		ready.Round(100*time.Millisecond), led.Round(100*time.Millisecond), resynced.Round(100*time.Millisecond))
	fmt.Printf("writes: %s\n", t)
	fmt.Printf("reads: %s\n", t.readSummary())
	fmt.Printf("RSS %s, peak %s; Go heap in use %s\n", benchenv.MiB(m.RSS()), benchenv.MiB(m.HWM()), benchenv.MiB(m.Heap()))
	return b.heapProfile(u, "restart.heap")
}

// handover kills the leader with SIGKILL while a standby runs, at the
// moment a namespace is created, and measures until the standby has set
// it up.
func (b *bench) handover(ctx context.Context) error {
	if len(b.running()) < 2 {
		if _, _, err := b.startManager(); err != nil {
			return err
		}
	}
	lu, lm, err := b.leader(ctx, time.Minute)
	if err != nil {
		return err
	}
	// The standby has warmed up before the kill: its namespace queue holds
	// every namespace (controller-runtime's warmup, which the manager
	// turns on), waiting for the lease.
	warm := time.Now()
	for _, m := range b.running() {
		if m == lm {
			continue
		}
		for m.SumGauges(`workqueue_depth{controller="namespace"`) < float64(b.w.count()) {
			if m.Exited() {
				return fmt.Errorf("the standby exited while warming up (log: %s)", m.Log())
			}
			if time.Since(warm) > 5*time.Minute {
				return fmt.Errorf("the standby's namespace queue is not filled 5 minutes after it started")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	ns := fmt.Sprintf("handover-%d", time.Now().UnixNano()%100000)
	t0 := time.Now()
	b.forget(lu)
	lm.Kill()
	if err := b.w.createNamespace(ctx, ns); err != nil {
		return err
	}
	nu, _, err := b.leader(ctx, time.Minute)
	if err != nil {
		return err
	}
	elected := time.Since(t0)
	for !b.w.namespaceDone(ctx, ns) {
		if time.Since(t0) > 5*time.Minute {
			return fmt.Errorf("namespace %s not set up 5 minutes after the leader was killed", ns)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("\n## handover (leader %s killed with SIGKILL, standby %s)\n", lu, nu)
	fmt.Printf("standby leads %s after the kill; a namespace created at the kill is set up %s after it\n",
		elected.Round(100*time.Millisecond), time.Since(t0).Round(100*time.Millisecond))
	_, err = b.settle(ctx, 10*time.Minute)
	b.reportRestarts()
	return err
}

// namespaceDone reports whether ns has every Secret and ServiceAccount
// entry (or, with delivery Node, whether regcred reports it).
func (w *world) namespaceDone(ctx context.Context, ns string) bool {
	var sa corev1.ServiceAccount
	if err := w.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &sa); err != nil {
		return false
	}
	if w.delivery == "Node" {
		return true
	}
	names := map[string]bool{}
	for _, r := range sa.ImagePullSecrets {
		names[r.Name] = true
	}
	for i := range w.creds {
		if !names[secretName(i)] {
			return false
		}
		if err := w.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: secretName(i)}, &corev1.Secret{}); err != nil {
			return false
		}
	}
	return true
}

// createNamespace creates a selected namespace with its default
// ServiceAccount (the harness runs no controller-manager to make it).
func (w *world) createNamespace(ctx context.Context, ns string) error {
	err := retry(ctx, func() error {
		return ignoreExists(w.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"bench": "yes"}}}))
	})
	if err != nil {
		return err
	}
	if err := retry(ctx, func() error {
		return ignoreExists(w.c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}))
	}); err != nil {
		return err
	}
	w.mu.Lock()
	w.present[ns] = true
	w.mu.Unlock()
	return nil
}
