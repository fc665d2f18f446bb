package controller

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"regcred.dev/regcred/internal/credential"
)

func newQueue() workqueue.TypedRateLimitingInterface[reconcile.Request] {
	return workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
}

// drain returns what q holds, without blocking.
func drain(q workqueue.TypedRateLimitingInterface[reconcile.Request]) map[reconcile.Request]bool {
	out := map[reconcile.Request]bool{}
	for q.Len() > 0 {
		req, _ := q.Get()
		out[req] = true
		q.Done(req)
	}
	return out
}

// Each kind's credential controller starts its wakeup source in no fixed
// order. Whatever the order, and whether a failure is recorded before or
// after the sources start, it must reach the controller of its own kind.
func TestFailuresReachTheirKindWhateverTheStartOrder(t *testing.T) {
	cluster := credential.Key{Kind: credential.KindCluster, Name: "shared"}
	namespaced := credential.Key{Kind: credential.KindNamespaced, Namespace: "team-a", Name: "harbor"}
	wantCluster := reconcile.Request{NamespacedName: types.NamespacedName{Name: "shared"}}
	wantNamespaced := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "team-a", Name: "harbor"}}

	for _, order := range [][]credential.Kind{{credential.KindCluster, credential.KindNamespaced}, {credential.KindNamespaced, credential.KindCluster}} {
		for _, before := range []bool{true, false} {
			t.Run(fmt.Sprintf("start %s first, failures before start %v", order[0], before), func(t *testing.T) {
				f := newFailures()
				queues := map[credential.Kind]workqueue.TypedRateLimitingInterface[reconcile.Request]{}
				record := func(ns string) {
					if !f.set(cluster, ns, "Secret name is taken") {
						t.Fatalf("set(%s, %s) reported no change", cluster, ns)
					}
					if !f.set(namespaced, ns, "Secret name is taken") {
						t.Fatalf("set(%s, %s) reported no change", namespaced, ns)
					}
				}
				if before {
					record("ns-1")
				}
				for _, kind := range order {
					queues[kind] = newQueue()
					if err := f.source(kind).Start(context.Background(), queues[kind]); err != nil {
						t.Fatal(err)
					}
				}
				if !before {
					record("ns-2")
				}
				gotCluster, gotNamespaced := drain(queues[credential.KindCluster]), drain(queues[credential.KindNamespaced])
				if len(gotCluster) != 1 || !gotCluster[wantCluster] {
					t.Errorf("ClusterRegistryCredential queue = %v, want only %v", gotCluster, wantCluster)
				}
				if len(gotNamespaced) != 1 || !gotNamespaced[wantNamespaced] {
					t.Errorf("RegistryCredential queue = %v, want only %v", gotNamespaced, wantNamespaced)
				}
			})
		}
	}
}

func TestFailuresSetReportsNewAndChanged(t *testing.T) {
	f := newFailures()
	key := credential.Key{Kind: credential.KindCluster, Name: "c"}
	steps := []struct {
		ns, msg string
		want    bool
	}{
		{"a", "taken", true},
		{"a", "taken", false}, // unchanged
		{"a", "other", true},  // changed
		{"a", "", false},      // cleared: a change, but not a failure
		{"a", "", false},      // nothing to clear
		{"b", "taken", true},  // another namespace
	}
	for i, s := range steps {
		if got := f.set(key, s.ns, s.msg); got != s.want {
			t.Errorf("step %d set(%q, %q) = %v, want %v", i, s.ns, s.msg, got, s.want)
		}
	}
	got := f.get(key, func(string) bool { return true })
	if len(got) != 1 || got[0] != (failure{"b", "taken"}) {
		t.Errorf("get = %v, want [{b taken}]", got)
	}
	f.clearNamespace("b")
	if got := f.get(key, func(string) bool { return true }); len(got) != 0 {
		t.Errorf("after clearNamespace: %v", got)
	}
}
