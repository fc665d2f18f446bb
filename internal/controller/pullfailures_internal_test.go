package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
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
