package nodecreds

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
)

func TestMergeNodes(t *testing.T) {
	base := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	nr := func(name string, s int) v1alpha1.NodeRequests {
		return v1alpha1.NodeRequests{Name: name, LastRequestAt: metav1.NewTime(at(s))}
	}
	for _, tc := range []struct {
		name string
		have []v1alpha1.NodeRequests
		seen map[string]time.Time
		want []string // name@second, most recent first
	}{
		{"empty", nil, nil, nil},
		{"latest of each, most recent first",
			[]v1alpha1.NodeRequests{nr("a", 1), nr("b", 30)},
			map[string]time.Time{"c": at(20), "a": at(40), "b": at(10)},
			[]string{"a@40", "b@30", "c@20"}},
		{"ties by name", nil, map[string]time.Time{"z": at(5), "m": at(5), "a": at(5)}, []string{"a@5", "m@5", "z@5"}},
		{"truncated to seconds", nil, map[string]time.Time{"a": at(5).Add(900 * time.Millisecond)}, []string{"a@5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeNodes(tc.have, tc.seen)
			var s []string
			for _, n := range got {
				s = append(s, fmt.Sprintf("%s@%d", n.Name, int(n.LastRequestAt.Sub(base).Seconds())))
			}
			if strings.Join(s, " ") != strings.Join(tc.want, " ") {
				t.Errorf("got %v, want %v", s, tc.want)
			}
		})
	}
	t.Run("bounded, the most recent kept", func(t *testing.T) {
		var have []v1alpha1.NodeRequests
		for i := range maxNodesInStatus {
			have = append(have, nr(fmt.Sprintf("old-%02d", i), i))
		}
		seen := map[string]time.Time{}
		for i := range 10 {
			seen[fmt.Sprintf("new-%02d", i)] = at(1000 + i)
		}
		got := mergeNodes(have, seen)
		if len(got) != maxNodesInStatus {
			t.Fatalf("%d nodes, want %d", len(got), maxNodesInStatus)
		}
		if got[0].Name != "new-09" || got[len(got)-1].Name != "old-10" {
			t.Errorf("first %s, last %s; want new-09 and old-10", got[0].Name, got[len(got)-1].Name)
		}
	})
}

func TestStatsBoundsNodes(t *testing.T) {
	s := newStats(time.Now)
	k := clusterKey("harbor")
	for i := range maxNodesInStatus * 10 {
		s.served(k, fmt.Sprintf("node-%04d", i))
	}
	s.refused(k, "node-0000", "why")
	d := s.take()[k]
	if d.served != maxNodesInStatus*10 || d.refused != 1 || d.lastRefusal != "why" {
		t.Errorf("counts %+v", d)
	}
	if len(d.nodes) > maxNodesInStatus*4 {
		t.Errorf("%d nodes remembered, want at most %d", len(d.nodes), maxNodesInStatus*4)
	}
	if len(s.take()) != 0 {
		t.Error("take does not reset")
	}
}

func flushEnv(t *testing.T, funcs interceptor.Funcs) (client.WithWatch, *Flusher) {
	t.Helper()
	scheme := must(credential.Scheme())
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(fixtureCredentials()...).
		WithStatusSubresource(&v1alpha1.ClusterRegistryCredential{}, &v1alpha1.RegistryCredential{}).
		WithInterceptorFuncs(funcs).Build()
	return c, &Flusher{Stats: newStats(time.Now), Client: c, Interval: time.Hour, Log: logr.Discard()}
}

func deliveryOf(t *testing.T, c client.Client, k credential.Key) *v1alpha1.DeliveryStatus {
	t.Helper()
	obj := newObject(k)
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: k.Namespace, Name: k.Name}, obj); err != nil {
		t.Fatal(err)
	}
	return must(credential.From(obj)).Status.Delivery
}

func TestFlusherAdds(t *testing.T) {
	var patches atomic.Int64
	c, f := flushEnv(t, interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
		patches.Add(1)
		return c.SubResource(sub).Patch(ctx, obj, p, opts...)
	}})
	harbor, own := clusterKey("harbor"), credential.Key{Kind: credential.KindNamespaced, Namespace: "apps", Name: "own"}
	ctx := context.Background()
	for range 3 {
		f.Stats.served(harbor, testNode)
	}
	f.Stats.refused(harbor, "node-b", "namespace other is not selected")
	f.Stats.served(own, testNode)
	f.Flush(ctx)
	if n := patches.Load(); n != 2 {
		t.Errorf("%d status writes, want 2 (one per credential)", n)
	}
	st := deliveryOf(t, c, harbor)
	if st == nil || st.Mode != v1alpha1.DeliveryNode || st.Served != 3 || st.Refused != 1 || st.LastRefusal != "namespace other is not selected" ||
		st.LastServedAt == nil || st.LastRefusedAt == nil || len(st.Nodes) != 2 {
		t.Fatalf("harbor delivery %+v", st)
	}
	f.Stats.served(harbor, "node-c")
	f.Flush(ctx)
	if st := deliveryOf(t, c, harbor); st.Served != 4 || st.Refused != 1 || len(st.Nodes) != 3 {
		t.Errorf("after a second flush %+v, want served 4 refused 1 on 3 nodes", st)
	}
	if st := deliveryOf(t, c, own); st == nil || st.Served != 1 {
		t.Errorf("own delivery %+v", st)
	}
	patches.Store(0)
	f.Flush(ctx)
	if n := patches.Load(); n != 0 {
		t.Errorf("%d writes with nothing counted, want 0", n)
	}
}

// TestFlusherConflict: another replica adds its counts between this
// one's read and write; the conflict is retried on the fresh object and
// both counts stay.
func TestFlusherConflict(t *testing.T) {
	var raced atomic.Bool
	var patches atomic.Int64
	c, f := flushEnv(t, interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
		patches.Add(1)
		if raced.CompareAndSwap(false, true) {
			// The other replica's flush lands first.
			other := &v1alpha1.ClusterRegistryCredential{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), other); err != nil {
				return err
			}
			other.Status.Delivery = &v1alpha1.DeliveryStatus{Mode: v1alpha1.DeliveryNode, Served: 10,
				Nodes: []v1alpha1.NodeRequests{{Name: "node-z", LastRequestAt: metav1.Now()}}}
			if err := c.Status().Update(ctx, other); err != nil {
				return err
			}
		}
		return c.SubResource(sub).Patch(ctx, obj, p, opts...)
	}})
	harbor := clusterKey("harbor")
	for range 3 {
		f.Stats.served(harbor, testNode)
	}
	f.Flush(context.Background())
	st := deliveryOf(t, c, harbor)
	if st.Served != 13 || len(st.Nodes) != 2 {
		t.Errorf("delivery %+v, want the other replica's 10 + this one's 3 on 2 nodes", st)
	}
	if n := patches.Load(); n != 2 {
		t.Errorf("%d patches, want 2 (a conflict, then the retry)", n)
	}
	if len(f.Stats.take()) != 0 {
		t.Error("counts put back after a successful retry")
	}
}

func TestFlusherFailures(t *testing.T) {
	t.Run("credential gone: counts dropped", func(t *testing.T) {
		_, f := flushEnv(t, interceptor.Funcs{})
		f.Stats.served(clusterKey("deleted"), testNode)
		f.Flush(context.Background())
		if len(f.Stats.take()) != 0 {
			t.Error("counts of a deleted credential kept")
		}
	})
	t.Run("API error: counts kept for the next flush", func(t *testing.T) {
		var fail atomic.Bool
		fail.Store(true)
		c, f := flushEnv(t, interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if fail.Load() {
				return errors.New("etcdserver: request timed out")
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		}})
		harbor := clusterKey("harbor")
		f.Stats.served(harbor, testNode)
		f.Stats.served(harbor, testNode)
		f.Flush(context.Background())
		f.Stats.served(harbor, "node-b")
		fail.Store(false)
		f.Flush(context.Background())
		if st := deliveryOf(t, c, harbor); st.Served != 3 || len(st.Nodes) != 2 {
			t.Errorf("delivery %+v, want 3 served on 2 nodes", st)
		}
	})
}

func TestFlusherStartFlushesOnStop(t *testing.T) {
	c, f := flushEnv(t, interceptor.Funcs{})
	f.Stats.served(clusterKey("harbor"), testNode)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st := deliveryOf(t, c, clusterKey("harbor")); st == nil || st.Served != 1 {
		t.Errorf("delivery %+v after stop, want 1 served", st)
	}
	if f.NeedLeaderElection() {
		t.Error("every replica flushes")
	}
}
