package controller

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/policy"
)

// TestPolicyWriterSync: the writer creates the rendered policy and
// binding, updates a changed one, deletes generated objects it no longer
// renders, and leaves objects it did not generate alone.
func TestPolicyWriterSync(t *testing.T) {
	s, err := credential.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	stale := &admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "regcred-pod-injection-7", Labels: map[string]string{policy.LabelPolicy: "true"}}}
	staleBinding := &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "regcred-pod-injection-7", Labels: map[string]string{policy.LabelPolicy: "true"}}}
	someoneElses := &admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "kyverno-thing"}}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(stale, staleBinding, someoneElses).Build()
	cat := credential.NewCatalogue("regcred-system")
	cr := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "harbor"}}
	cr.Spec.Registries = []string{"harbor.internal"}
	cr.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
	cat.Put(cr)
	cat.MarkSynced()
	w := &PolicyWriter{Catalogue: cat, Client: c, Reader: c, Options: policy.Options{Namespace: "regcred-system"}, Log: logr.Discard()}
	ctx := context.Background()
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var got admissionregistrationv1.MutatingAdmissionPolicy
	if err := c.Get(ctx, client.ObjectKey{Name: "regcred-pod-injection"}, &got); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "regcred-pod-injection"}, &admissionregistrationv1.MutatingAdmissionPolicyBinding{}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{stale, staleBinding} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err == nil {
			t.Errorf("stale %T %s not deleted", o, o.GetName())
		}
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(someoneElses), someoneElses); err != nil {
		t.Errorf("a policy regcred did not generate was touched: %v", err)
	}
	rv := got.ResourceVersion

	// Nothing changed: nothing written.
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Get(ctx, client.ObjectKey{Name: "regcred-pod-injection"}, &got)
	if got.ResourceVersion != rv {
		t.Errorf("an unchanged rendering was written again (%s → %s)", rv, got.ResourceVersion)
	}

	// A new key: the policy is updated.
	cr2 := cr.DeepCopy()
	cr2.Spec.Registries = append(cr2.Spec.Registries, "ghcr.io/acme")
	cr2.Generation = 2
	cat.Put(cr2)
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Get(ctx, client.ObjectKey{Name: "regcred-pod-injection"}, &got)
	if got.ResourceVersion == rv {
		t.Error("a changed rendering was not written")
	}
}
