package controlplane_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/controlplane"
)

// The fault runs of bench/scale kill the API server and etcd and compact
// etcd's history; each must leave a control plane that serves what was
// stored, and compaction must expire older watches.
func TestKillStartAgainAndCompact(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	cp, err := controlplane.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	ns, err := cp.CreateNamespace(ctx, "faults", nil)
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kept"}, Data: map[string]string{"k": "v"}}
	if err := cp.Client.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	stored := func(when string) {
		t.Helper()
		var got corev1.ConfigMap
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(cm), &got); err != nil || got.Data["k"] != "v" {
			t.Fatalf("%s: ConfigMap %v, err %v", when, got.Data, err)
		}
	}

	if err := cp.Kill(controlplane.APIServer); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{}); err == nil {
		t.Fatal("the API server answered after it was killed")
	}
	if err := cp.StartAgain(ctx, controlplane.APIServer); err != nil {
		t.Fatal(err)
	}
	stored("API server started again")

	if err := cp.Kill(controlplane.Etcd); err != nil {
		t.Fatal(err)
	}
	if err := cp.StartAgain(ctx, controlplane.Etcd); err != nil {
		t.Fatal(err)
	}
	if err := cp.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	stored("etcd started again")

	// A watch from before a compaction is refused with 410 Gone (the
	// API server restarted over a compacted etcd starts its watch cache at
	// the current revision, as in a real cluster).
	cs := kubernetes.NewForConfigOrDie(cp.Config)
	list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := list.ResourceVersion
	for i := range 3 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later-" + string(rune('a'+i))}}
		if err := cp.Client.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	rev, err := cp.Compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev <= 0 {
		t.Fatalf("compacted to revision %d", rev)
	}
	// The API server's watch cache still holds the recent events; a
	// restart drops it, as one does in a real cluster.
	if err := cp.Kill(controlplane.APIServer); err != nil {
		t.Fatal(err)
	}
	if err := cp.StartAgain(ctx, controlplane.APIServer); err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: old})
	if err == nil {
		ev, ok := <-w.ResultChan()
		w.Stop()
		if !ok {
			t.Fatal("watch from a compacted revision closed with no event")
		}
		st, isStatus := ev.Object.(*metav1.Status)
		if !isStatus || st.Code != 410 {
			t.Fatalf("watch from a compacted revision: got %s %T, want a 410 Gone", ev.Type, ev.Object)
		}
	} else if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("watch from a compacted revision: %v, want 410 Gone", err)
	}
	stored("after compaction")
}
