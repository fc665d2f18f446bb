package nodecreds

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/logkeys"
	"regcred.dev/regcred/internal/redact"
)

// maxNodesInStatus bounds status.delivery.nodes.
const maxNodesInStatus = 32

// Stats counts, per credential, what this replica served and refused
// since its last flush. Counting is a map update under a lock; the API
// sees the sums only when Flush writes them.
type Stats struct {
	now     func() time.Time
	mu      sync.Mutex
	pending map[credential.Key]*delta
}

type delta struct {
	served, refused         int64
	lastServed, lastRefused time.Time
	lastRefusal             string
	nodes                   map[string]time.Time
}

func newStats(now func() time.Time) *Stats {
	return &Stats{now: now, pending: map[credential.Key]*delta{}}
}

func (s *Stats) entry(k credential.Key) *delta {
	d, ok := s.pending[k]
	if !ok {
		d = &delta{nodes: map[string]time.Time{}}
		s.pending[k] = d
	}
	return d
}

func (s *Stats) served(k credential.Key, node string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.entry(k)
	d.served++
	d.lastServed = now
	d.seen(node, now)
}

func (s *Stats) refused(k credential.Key, node, why string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.entry(k)
	d.refused++
	d.lastRefused, d.lastRefusal = now, why
	d.seen(node, now)
}

func (d *delta) seen(node string, at time.Time) {
	if len(d.nodes) >= maxNodesInStatus*4 {
		if _, ok := d.nodes[node]; !ok {
			return
		}
	}
	d.nodes[node] = at
}

func (s *Stats) take() map[credential.Key]*delta {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.pending
	s.pending = map[credential.Key]*delta{}
	return out
}

// putBack returns deltas a flush could not write, for the next one.
func (s *Stats) putBack(k credential.Key, d *delta) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.entry(k)
	cur.served += d.served
	cur.refused += d.refused
	if d.lastServed.After(cur.lastServed) {
		cur.lastServed = d.lastServed
	}
	if d.lastRefused.After(cur.lastRefused) {
		cur.lastRefused, cur.lastRefusal = d.lastRefused, d.lastRefusal
	}
	for n, t := range d.nodes {
		if t.After(cur.nodes[n]) {
			cur.nodes[n] = t
		}
	}
}

// Flusher adds each replica's counts to status.delivery of the
// credentials, every interval: one write per credential that served or
// refused since, whatever the number of requests or namespaces. Every
// replica runs one (no leader needed); a conflict is retried on the
// fresh object, so no replica's counts are lost.
type Flusher struct {
	Stats    *Stats
	Client   client.Client
	Interval time.Duration
	Log      logr.Logger
}

// Start flushes every interval until ctx ends, then once more.
func (f *Flusher) Start(ctx context.Context) error {
	t := time.NewTicker(f.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			f.Flush(flushCtx)
			cancel()
			return nil
		case <-t.C:
			f.Flush(ctx)
		}
	}
}

// NeedLeaderElection: every replica serves, every replica flushes.
func (f *Flusher) NeedLeaderElection() bool { return false }

// Flush writes what was counted since the last flush.
func (f *Flusher) Flush(ctx context.Context) {
	for k, d := range f.Stats.take() {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error { return f.write(ctx, k, d) })
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			f.Log.Info("could not record node deliveries in the status; retrying at the next flush", logkeys.Credential, k.String(), logkeys.Reason, redact.Message(err.Error()))
			f.Stats.putBack(k, d)
		}
	}
}

func (f *Flusher) write(ctx context.Context, k credential.Key, d *delta) error {
	obj := newObject(k)
	if err := f.Client.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: k.Name}, obj); err != nil {
		return err
	}
	c, err := credential.From(obj)
	if err != nil {
		return err
	}
	orig := obj.DeepCopyObject().(client.Object)
	st := c.Status.Delivery
	if st == nil {
		st = &v1alpha1.DeliveryStatus{Mode: c.Spec.Delivery}
		c.Status.Delivery = st
	}
	st.Served += d.served
	st.Refused += d.refused
	if t := d.lastServed; !t.IsZero() && (st.LastServedAt == nil || t.After(st.LastServedAt.Time)) {
		st.LastServedAt = timeOf(t)
	}
	if t := d.lastRefused; !t.IsZero() && (st.LastRefusedAt == nil || t.After(st.LastRefusedAt.Time)) {
		st.LastRefusedAt, st.LastRefusal = timeOf(t), redact.Message(d.lastRefusal)
	}
	st.Nodes = mergeNodes(st.Nodes, d.nodes)
	return f.Client.Status().Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
}

func newObject(k credential.Key) client.Object {
	if k.Kind == credential.KindCluster {
		return &v1alpha1.ClusterRegistryCredential{}
	}
	return &v1alpha1.RegistryCredential{}
}

// mergeNodes keeps the latest time of each node, most recent first, at
// most maxNodesInStatus.
func mergeNodes(have []v1alpha1.NodeRequests, seen map[string]time.Time) []v1alpha1.NodeRequests {
	latest := map[string]time.Time{}
	for _, n := range have {
		latest[n.Name] = n.LastRequestAt.Time
	}
	for n, t := range seen {
		t = t.Truncate(time.Second)
		if t.After(latest[n]) {
			latest[n] = t
		}
	}
	names := slices.Collect(maps.Keys(latest))
	slices.SortFunc(names, func(a, b string) int {
		if c := latest[b].Compare(latest[a]); c != 0 {
			return c
		}
		if a < b {
			return -1
		}
		return 1
	})
	if len(names) > maxNodesInStatus {
		names = names[:maxNodesInStatus]
	}
	out := make([]v1alpha1.NodeRequests, len(names))
	for i, n := range names {
		out[i] = v1alpha1.NodeRequests{Name: n, LastRequestAt: metav1.NewTime(latest[n])}
	}
	return out
}

func timeOf(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}
