package controller

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
)

func memoCredential(i int, registry string) *credential.Credential {
	rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("t%d", i), Name: "c"}}
	rc.Spec.Registries = []string{registry}
	rc.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
	return credential.FromNamespaced(rc)
}

func memoRenderer(n int) *renderer {
	b := fake.NewClientBuilder()
	for i := range n {
		b = b.WithObjects(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("t%d", i), Name: "src"},
			Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"r.example.com":{"username":"u","password":"p"}}}`)}})
	}
	return newRenderer(b.Build(), "regcred-system", nil, nil)
}

// Deleting credentials empties the memo: it held one entry per deleted
// credential for the manager's life.
func TestRendererForgetsDeletedCredentials(t *testing.T) {
	const n = 50
	s := memoRenderer(n)
	ctx := context.Background()
	for i := range n {
		if r := s.get(ctx, memoCredential(i, "r.example.com")); r.Err != nil {
			t.Fatalf("render %d: %v", i, r.Err)
		}
	}
	if got := s.memoLen(); got != n {
		t.Fatalf("memo holds %d, want %d", got, n)
	}
	for i := range n {
		s.forget(memoCredential(i, "r.example.com").Key)
	}
	if got := s.memoLen(); got != 0 {
		t.Errorf("after deleting every credential the memo holds %d", got)
	}
	if len(s.users) != 0 || len(s.usedKey) != 0 {
		t.Errorf("bookkeeping left: %d users, %d keys", len(s.users), len(s.usedKey))
	}
}

// A credential whose registries change drops its old rendering; one shared
// with another credential stays until both are gone.
func TestRendererDropsReplacedAndKeepsShared(t *testing.T) {
	s := memoRenderer(1)
	ctx := context.Background()
	a := memoCredential(0, "r.example.com")
	s.get(ctx, a)
	s.get(ctx, memoCredential(0, "other.example.com")) // a's spec changed
	if got := s.memoLen(); got != 1 {
		t.Errorf("memo holds %d after a spec change, want 1", got)
	}
	b := memoCredential(0, "other.example.com")
	b.Key.Name = "d" // another credential, the same source and registries
	s.get(ctx, b)
	s.forget(a.Key)
	if got := s.memoLen(); got != 1 {
		t.Errorf("memo holds %d, want the entry b still uses", got)
	}
	s.forget(b.Key)
	if got := s.memoLen(); got != 0 {
		t.Errorf("memo holds %d, want 0", got)
	}
}
