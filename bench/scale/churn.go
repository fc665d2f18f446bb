package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientretry "k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/bench/internal/benchenv"
	"regcred.dev/regcred/internal/testenv/controlplane"
)

// churn is what others do to a large cluster while regcred runs, each
// second: namespaces created and deleted, default ServiceAccounts edited
// (a pull secret added beside regcred's, or the list replaced by a CI
// script's patch, dropping regcred's entries), managed Secrets deleted;
// and a credential rotated every rotateEvery. It counts what it did, for
// the minimum of writes regcred needed.
type churn struct {
	w                             *world
	created, deleted, added       atomic.Int64
	replaced, secretsDel, rotated atomic.Int64
	// secretsRotated is the Secrets a rotation made stale: the namespaces
	// present at the time.
	secretsRotated atomic.Int64
	seq            atomic.Int64
}

const (
	churnTick   = time.Second
	rotateEvery = 60 * time.Second
)

func (ch *churn) run(ctx context.Context) error {
	tick := time.NewTicker(churnTick)
	defer tick.Stop()
	lastRotate := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		// One after another, so that what the world records follows the
		// order the API server saw.
		ops := []func(context.Context) error{ch.createOne, ch.deleteOne, ch.addForeign, ch.replaceList, ch.deleteSecret}
		if time.Since(lastRotate) >= rotateEvery && ch.w.delivery != "Node" {
			lastRotate = time.Now()
			ops = append(ops, ch.rotate)
		}
		for _, op := range ops {
			if err := op(ctx); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
}

func (ch *churn) String() string {
	return fmt.Sprintf("%d namespaces created, %d deleted, %d pull secrets added beside regcred's, %d lists replaced, %d managed Secrets deleted, %d rotations (%d Secrets made stale)",
		ch.created.Load(), ch.deleted.Load(), ch.added.Load(), ch.replaced.Load(), ch.secretsDel.Load(), ch.rotated.Load(), ch.secretsRotated.Load())
}

// minimum is the writes regcred needs for what the churn did: per new
// namespace a Secret per credential and one ServiceAccount patch; per
// replaced list one patch; per deleted Secret one create; per stale
// Secret one update. Added pull secrets need none.
func (ch *churn) minimum(creds int) int {
	return int(ch.created.Load())*(creds+1) + int(ch.replaced.Load()) + int(ch.secretsDel.Load()) + int(ch.secretsRotated.Load())
}

func (ch *churn) pick() (string, bool) {
	w := ch.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.present) == 0 {
		return "", false
	}
	// Map order is random enough, and cheap at 10,000.
	n := rand.IntN(min(len(w.present), 64))
	for ns := range w.present {
		if n == 0 {
			return ns, true
		}
		n--
	}
	return "", false
}

func (ch *churn) createOne(ctx context.Context) error {
	ns := fmt.Sprintf("churn-%06d", ch.seq.Add(1))
	if err := ch.w.createNamespace(ctx, ns); err != nil {
		return err
	}
	ch.created.Add(1)
	return nil
}

// deleteOne deletes a namespace as the namespace controller would: its
// objects, then the finalizer (the harness runs no controller-manager).
func (ch *churn) deleteOne(ctx context.Context) error {
	ns, ok := ch.pick()
	if !ok {
		return nil
	}
	w := ch.w
	w.mu.Lock()
	delete(w.present, ns)
	delete(w.foreign, ns)
	w.mu.Unlock()
	if err := retry(ctx, func() error {
		return ignoreNotFound(w.c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}); err != nil {
		return err
	}
	for _, obj := range []client.Object{&corev1.Secret{}, &corev1.ServiceAccount{}} {
		if err := retry(ctx, func() error { return ignoreNotFound(w.c.DeleteAllOf(ctx, obj, client.InNamespace(ns))) }); err != nil {
			return err
		}
	}
	if err := retry(ctx, func() error {
		cur, err := w.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		cur.Spec.Finalizers = nil
		_, err = w.cs.CoreV1().Namespaces().Finalize(ctx, cur, metav1.UpdateOptions{})
		return ignoreNotFound(err)
	}); err != nil {
		return err
	}
	ch.deleted.Add(1)
	return nil
}

// addForeign adds another tool's pull secret beside regcred's.
func (ch *churn) addForeign(ctx context.Context) error {
	ns, ok := ch.pick()
	if !ok {
		return nil
	}
	name := fmt.Sprintf("other-%d", ch.seq.Add(1))
	err := retry(ctx, func() error {
		return retryConflict(func() error {
			var sa corev1.ServiceAccount
			if err := ch.w.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &sa); err != nil {
				return err
			}
			sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
			return ch.w.c.Update(ctx, &sa)
		})
	})
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	ch.w.mu.Lock()
	if ch.w.present[ns] {
		ch.w.foreign[ns] = append(ch.w.foreign[ns], name)
	}
	ch.w.mu.Unlock()
	ch.added.Add(1)
	return nil
}

// replaceList is a CI script's `kubectl patch serviceaccount default -p
// '{"imagePullSecrets":[{"name":"ci"}]}'`: regcred's entries are dropped
// and must come back, the script's kept.
func (ch *churn) replaceList(ctx context.Context) error {
	if ch.w.delivery == "Node" {
		return nil
	}
	ns, ok := ch.pick()
	if !ok {
		return nil
	}
	name := fmt.Sprintf("ci-%d", ch.seq.Add(1))
	patch := []byte(fmt.Sprintf(`{"imagePullSecrets":[{"name":%q}]}`, name))
	err := retry(ctx, func() error {
		return ch.w.c.Patch(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}, client.RawPatch(types.MergePatchType, patch))
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	ch.w.mu.Lock()
	if ch.w.present[ns] {
		ch.w.foreign[ns] = []string{name}
	}
	ch.w.mu.Unlock()
	ch.replaced.Add(1)
	return nil
}

// deleteSecret deletes one of regcred's Secrets, as a careless admin
// would.
func (ch *churn) deleteSecret(ctx context.Context) error {
	if ch.w.delivery == "Node" {
		return nil
	}
	ns, ok := ch.pick()
	if !ok {
		return nil
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretName(rand.IntN(ch.w.creds))}}
	gone := false
	err := retry(ctx, func() error {
		err := ch.w.c.Delete(ctx, s)
		if apierrors.IsNotFound(err) {
			gone = true
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if !gone {
		ch.secretsDel.Add(1)
	}
	return nil
}

// rotate changes a credential's password.
func (ch *churn) rotate(ctx context.Context) error {
	w := ch.w
	i := rand.IntN(w.creds)
	w.mu.Lock()
	w.rotation[i]++
	n := len(w.present)
	w.mu.Unlock()
	if err := retry(ctx, func() error { return w.writeSource(ctx, i) }); err != nil {
		return err
	}
	ch.rotated.Add(1)
	ch.secretsRotated.Add(int64(n))
	return nil
}

// faults runs the churn with etcd restarted, etcd compacted under a
// restarted API server, and the leader killed; then checks everything.
func (b *bench) faults(ctx context.Context) error {
	for len(b.running()) < 2 {
		if _, _, err := b.startManager(); err != nil {
			return err
		}
	}
	if _, err := b.settle(ctx, 10*time.Minute); err != nil {
		return err
	}
	t := newTally()
	if err := b.audit.read(t); err != nil {
		return err
	}
	t = newTally()
	ch := &churn{w: b.w}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ch.run(cctx) }()
	fault := func(name string, f func() error) error {
		time.Sleep(20 * time.Second)
		t0 := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Printf("fault: %s (%s)\n", name, time.Since(t0).Round(100*time.Millisecond))
		return nil
	}
	fmt.Printf("\n## faults under churn\n")
	t0 := time.Now()
	err := fault("etcd killed and started again", func() error {
		if err := b.cp.Kill(controlplane.Etcd); err != nil {
			return err
		}
		time.Sleep(*down)
		if err := b.cp.StartAgain(ctx, controlplane.Etcd); err != nil {
			return err
		}
		return b.cp.WaitReady(ctx)
	})
	if err == nil {
		err = fault("etcd compacted to its current revision and the API server restarted over it (watches 410 Gone, informers relist)", func() error {
			if err := b.cp.Kill(controlplane.APIServer); err != nil {
				return err
			}
			if _, err := b.cp.Compact(ctx); err != nil {
				return err
			}
			time.Sleep(*down)
			return b.cp.StartAgain(ctx, controlplane.APIServer)
		})
	}
	if err == nil {
		err = fault("the leader killed with SIGKILL, a new standby started", func() error {
			lu, lm, err := b.leader(ctx, time.Minute)
			if err != nil {
				return err
			}
			b.forget(lu)
			lm.Kill()
			if _, _, err := b.leader(ctx, time.Minute); err != nil {
				return err
			}
			_, _, err = b.startManager()
			return err
		})
	}
	if err == nil {
		time.Sleep(20 * time.Second)
	}
	stop()
	if cerr := <-done; err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	churned := time.Since(t0)
	stopped := time.Now()
	statusAt, err := b.settle(ctx, 20*time.Minute)
	if err != nil {
		return err
	}
	time.Sleep(5 * time.Second)
	if err := b.audit.read(t); err != nil {
		return err
	}
	minimum := ch.minimum(b.w.creds)
	fmt.Printf("churn for %s: %s\n", churned.Round(time.Second), ch)
	fmt.Printf("after the churn stopped: every Secret, ServiceAccount and status right %s later (status right at %s, last write at %s)\n",
		time.Since(stopped).Round(100*time.Millisecond), statusAt.Sub(stopped).Round(100*time.Millisecond), t.lastWrite.Sub(stopped).Round(100*time.Millisecond))
	fmt.Printf("writes: %s\n", t)
	if minimum > 0 {
		fmt.Printf("minimum for what the churn did: %d; made %+.2f%% (a Secret deleted and rotated counts twice in the minimum, status writes none)\n",
			minimum, 100*float64(t.writes-minimum)/float64(minimum))
	}
	b.reportRestarts()
	fmt.Printf("Secrets written more often than the churn asked (more than %d, the rotations): %d\n", ch.rotated.Load()+1, t.duplicates(int(ch.rotated.Load())+1))
	return nil
}

// soak runs the churn for -soak and samples every running manager.
func (b *bench) soak(ctx context.Context) error {
	if len(b.running()) == 0 {
		if _, _, err := b.startManager(); err != nil {
			return err
		}
	}
	lu, lm, err := b.leader(ctx, time.Minute)
	if err != nil {
		return err
	}
	ch := &churn{w: b.w}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ch.run(cctx) }()
	fmt.Printf("\n## soak: churn for %s, leader %s sampled every %s\n", *soak, lu, *sampleEvery)
	fmt.Printf("| minute | RSS | Go heap in use | goroutines | metric series |\n|---|---|---|---|---|\n")
	t0 := time.Now()
	sample := func() {
		series := 0
		_ = lm.Metrics(func(line string) {
			if len(line) > 0 && line[0] != '#' {
				series++
			}
		})
		fmt.Printf("| %.1f | %s | %s | %.0f | %d |\n", time.Since(t0).Minutes(), benchenv.MiB(lm.RSS()), benchenv.MiB(lm.Heap()), lm.Gauge("go_goroutines"), series)
	}
	sample()
	tick := time.NewTicker(*sampleEvery)
	for time.Since(t0) < *soak {
		select {
		case <-tick.C:
			sample()
		case err := <-done:
			tick.Stop()
			stop()
			return err
		}
	}
	tick.Stop()
	stop()
	if err := <-done; err != nil {
		return err
	}
	if _, err := b.settle(ctx, 20*time.Minute); err != nil {
		return err
	}
	fmt.Printf("churn: %s; everything right after it; leader peak RSS %s\n", ch, benchenv.MiB(lm.HWM()))
	return nil
}

// retry retries f while the control plane is away (killed, restarting):
// every error but the API's own answers, for up to two minutes.
func retry(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := f()
		if err == nil || apierrors.IsNotFound(err) || apierrors.IsAlreadyExists(err) || apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func retryConflict(f func() error) error {
	return clientretry.RetryOnConflict(clientretry.DefaultBackoff, f)
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
