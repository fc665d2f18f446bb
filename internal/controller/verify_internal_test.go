package controller

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/egress"
	"regcred.dev/regcred/internal/registry"
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

// TestVerifierRecordsProbeBeforeRunning: the probe is written into the
// status before it runs, so a manager that dies in it leaves a status
// that tells the next one to wait out the interval; a probe that cannot
// be recorded does not run.
func TestVerifierRecordsProbeBeforeRunning(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	obj := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "c", UID: "uid-2"}}
	obj.Spec.Registries = []string{"reg.example"}
	obj.Spec.Verify = &v1alpha1.Verify{Image: "other.example/app:1", Interval: metav1.Duration{Duration: time.Hour}}
	c := credential.FromCluster(obj)
	data := []byte(`{"auths":{"reg.example":{"username":"u","password":"p"}}}`)

	var recorded []*v1alpha1.VerifyStatus
	v := &verifier{now: func() time.Time { return now }}
	v.record = func(_ context.Context, c *credential.Credential, st *v1alpha1.VerifyStatus) error {
		if len(v.last) != 0 {
			t.Error("recorded after the probe ran")
		}
		recorded = append(recorded, st)
		c.Status.Verify = st // as the status patch does
		return nil
	}
	cond, st, _ := v.result(context.Background(), c, data)
	if len(recorded) != 1 || cond == nil || !recorded[0].ProbedAt.Equal(st.ProbedAt) || !recorded[0].NextProbeAt.Equal(st.NextProbeAt) {
		t.Fatalf("recorded %+v, probe %+v %+v", recorded, cond, st)
	}

	// A crash now: the successor sees the recorded probe and waits.
	v2 := &verifier{now: func() time.Time { return now.Add(time.Minute) }, record: func(context.Context, *credential.Credential, *v1alpha1.VerifyStatus) error {
		t.Error("the successor probed again within the interval")
		return nil
	}}
	if cond, _, next := v2.result(context.Background(), c, data); cond != nil || !next.Equal(now.Add(time.Hour)) {
		t.Errorf("successor: %+v next %s", cond, next)
	}

	// Unrecordable: no probe, a retry soon.
	obj.Status.Verify = nil
	v3 := &verifier{now: func() time.Time { return now }, record: func(context.Context, *credential.Credential, *v1alpha1.VerifyStatus) error {
		return errors.New("conflict")
	}}
	if cond, st, next := v3.result(context.Background(), c, data); cond != nil || st != nil || !next.Equal(now.Add(recordRetry)) || len(v3.last) != 0 {
		t.Errorf("unrecorded: %+v %+v next %s, want no probe and a retry at %s", cond, st, next, now.Add(recordRetry))
	}
}

// TestVerifierGuardsTenants: a RegistryCredential's probe of a loopback
// registry is Blocked, by class only, unless the guard allows it; a
// ClusterRegistryCredential's is not guarded.
func TestVerifierGuardsTenants(t *testing.T) {
	const marker = "INTERNAL-PAGE-MARKER"
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(marker))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	data := []byte(`{"auths":{"` + host + `":{"username":"u","password":"p"}}}`)
	verify := &v1alpha1.Verify{Image: host + "/app:1", Interval: metav1.Duration{Duration: time.Hour}}
	tenant := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "c", UID: "uid-3"}}
	tenant.Spec.Registries, tenant.Spec.Verify = []string{host}, verify
	cluster := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "c", UID: "uid-4"}}
	cluster.Spec.Registries, cluster.Spec.Verify = []string{host}, verify
	opts := []registry.Option{registry.WithTransport(srv.Client().Transport)}
	allowLoopback, _ := egress.NewGuard([]string{"127.0.0.0/8"})

	for _, tc := range []struct {
		name   string
		c      *credential.Credential
		guard  *egress.Guard
		reason string
	}{
		{"tenant", credential.FromNamespaced(tenant), nil, v1alpha1.ReasonBlocked},
		{"tenant allowed", credential.FromNamespaced(tenant), allowLoopback, string(registry.NotFound)},
		{"cluster", credential.FromCluster(cluster), nil, string(registry.NotFound)},
	} {
		v := &verifier{now: time.Now, options: opts, tenantGuard: tc.guard}
		cond, _ := v.probe(context.Background(), tc.c, data)
		if cond.Reason != tc.reason || strings.Contains(cond.Message, marker) || len(cond.Message) > 1024 {
			t.Errorf("%s: %s %q, want %s without the page", tc.name, cond.Reason, cond.Message, tc.reason)
		}
		if tc.reason == v1alpha1.ReasonBlocked && !strings.Contains(cond.Message, egress.ErrBlocked.Error()) {
			t.Errorf("%s: %q does not name the class", tc.name, cond.Message)
		}
	}
}
