package controller

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/kubeletmsg"
)

// TestRegistryLabelIsScopedToTheNamespace: a failure is labelled by the
// keys of the credentials that could act for its Pod. A tenant's glob
// ("*.io" sorts before every host) labels its own namespace's failures
// only, never another tenant's or the cluster's.
func TestRegistryLabelIsScopedToTheNamespace(t *testing.T) {
	cat := credential.NewCatalogue("regcred-system")
	hub := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "ghcr", Generation: 1}}
	hub.Spec.Registries = []string{"https://ghcr.io/acme"}
	hijack := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant-b", Name: "glob", Generation: 1}}
	hijack.Spec.Registries = []string{"*.io"}
	cat.Put(hub)
	cat.Put(hijack)
	w := &PullFailureWatch{Catalogue: cat}
	for _, tc := range []struct{ namespace, image, want string }{
		{"tenant-a", "ghcr.io/acme/app:1", "ghcr.io"},
		{"tenant-a", "quay.io/x/y:1", registryOther},
		{"tenant-b", "quay.io/x/y:1", "*.io"},
		{"tenant-b", "ghcr.io/acme/app:1", "*.io"},
		{"tenant-a", "::not an image::", registryOther},
	} {
		if got := w.registryLabel(tc.namespace, tc.image); got != tc.want {
			t.Errorf("registryLabel(%s, %s) = %q, want %q", tc.namespace, tc.image, got, tc.want)
		}
	}
}

// TestPullsCountSuccessAndFailure: the kubelet's successful pulls and
// failed pulls count in regcred_image_pulls_total; an image already on
// the node, a missing Secret and a Never policy are no pulls.
func TestPullsCountSuccessAndFailure(t *testing.T) {
	cat := credential.NewCatalogue("regcred-system")
	c := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "counted", Generation: 1}}
	c.Spec.Registries = []string{"pulls.example.com"}
	cat.Put(c)
	w := &PullFailureWatch{Catalogue: cat, Log: logr.Discard()}
	success := imagePulls.WithLabelValues("pulls.example.com", "success")
	failure := imagePulls.WithLabelValues("pulls.example.com", "failure")
	s0, f0 := testutil.ToFloat64(success), testutil.ToFloat64(failure)
	for _, ev := range []struct {
		reason, message string
		n               int
	}{
		{kubeletmsg.EventPulled, `Successfully pulled image "pulls.example.com/app:1" in 1.2s (1.2s including waiting). Image size: 1234 bytes.`, 2},
		{kubeletmsg.EventPulled, `Container image "pulls.example.com/app:1" already present on machine and can be accessed by the pod`, 5},
		{kubeletmsg.EventFailed, `Failed to pull image "pulls.example.com/app:2": 401 Unauthorized`, 3},
		{kubeletmsg.EventFailed, `(combined from similar events): Failed to pull image "pulls.example.com/app:2": 401 Unauthorized`, 4},
		{kubeletmsg.EventMissingSecret, `Unable to retrieve some image pull secrets (gone); attempting to pull the image may not succeed.`, 7},
		{kubeletmsg.EventNeverPull, `Container image "pulls.example.com/app:3" is not present with pull policy of Never`, 11},
	} {
		w.count(context.Background(), &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "apps"}, Reason: ev.reason, Message: ev.message}, ev.n)
	}
	if got := testutil.ToFloat64(success) - s0; got != 2 {
		t.Errorf("successful pulls counted %v, want 2", got)
	}
	if got := testutil.ToFloat64(failure) - f0; got != 7 {
		t.Errorf("failed pulls counted %v, want 7", got)
	}
	// A registry's first pull makes both series, so rate() sees the
	// next one and a success rate has its denominator.
	countPull("first.example.com", "failure", 1)
	if n := testutil.CollectAndCount(imagePulls); n < 4 {
		t.Errorf("%d series after a first failure, want both results of each registry", n)
	}
	if v := testutil.ToFloat64(imagePulls.WithLabelValues("first.example.com", "success")); v != 0 {
		t.Errorf("success series of first.example.com = %v, want 0", v)
	}
}
