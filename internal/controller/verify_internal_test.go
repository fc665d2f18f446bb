package controller

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
)

// TestVerifierProbesOncePerInterval: within the interval a credential is
// probed once, even when its status never recorded the probe (the write was
// lost); after the interval, or once forgotten, it is probed again.
func TestVerifierProbesOncePerInterval(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	v := &verifier{now: func() time.Time { return now }}
	obj := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "c", UID: "uid-1"}}
	obj.Spec.Registries = []string{"reg.example"}
	// The image is on a registry the credential has no entry for: the
	// probe answers NoCredential without the network.
	obj.Spec.Verify = &v1alpha1.Verify{Image: "other.example/app:1", Interval: metav1.Duration{Duration: time.Hour}}
	c := credential.FromCluster(obj)
	data := []byte(`{"auths":{"reg.example":{"username":"u","password":"p"}}}`)

	cond, st, next := v.result(context.Background(), c, data)
	if cond == nil || cond.Reason != v1alpha1.ReasonNoCredential || !next.Equal(now.Add(time.Hour)) {
		t.Fatalf("first result %+v, next %s", cond, next)
	}
	first := st.ProbedAt

	now = now.Add(30 * time.Minute)
	_, again, _ := v.result(context.Background(), c, data)
	if again == nil || again.ProbedAt != first {
		t.Errorf("within the interval, with the status lost: %+v, want the first probe again", again)
	}
	obj.Status.Verify = st
	if cond, _, next := v.result(context.Background(), c, data); cond != nil || !next.Equal(first.Add(time.Hour)) {
		t.Errorf("with the status recorded: %+v next %s, want nothing new until %s", cond, next, first.Add(time.Hour))
	}

	now = now.Add(31 * time.Minute)
	if _, st, _ := v.result(context.Background(), c, data); st == nil || !st.ProbedAt.Time.Equal(now) {
		t.Errorf("after the interval: %+v, want a new probe", st)
	}
	v.forget("uid-1")
	if len(v.last) != 0 {
		t.Errorf("forget left %v", v.last)
	}
}
