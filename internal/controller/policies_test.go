package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
	labels := map[string]string{policy.LabelPolicy: "true", policy.LabelManagedBy: "regcred"}
	stale := &admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "regcred-pod-injection-gone", Labels: labels}}
	staleBinding := &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "regcred-pod-injection-gone", Labels: labels}}
	someoneElses := &admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "kyverno-thing"}}
	// Another regcred install, with its own prefix, keeps its own.
	otherInstall := &admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "staging-pod-injection", Labels: labels}}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(stale, staleBinding, someoneElses, otherInstall).Build()
	cat := credential.NewCatalogue("regcred-system")
	cr := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "harbor"}}
	cr.Spec.Registries = []string{"harbor.internal"}
	cr.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
	cat.Put(cr)
	cat.MarkSynced()
	w := &PolicyWriter{Render: NewPolicyRender(cat, policy.Options{Namespace: "regcred-system"}), Client: c, Reader: c, Log: logr.Discard()}
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
	for _, o := range []client.Object{someoneElses, otherInstall} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			t.Errorf("policy %s, which this install did not generate, was touched: %v", o.GetName(), err)
		}
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

	// Back to the webhook: everything this install generated goes, once.
	remover := &PolicyWriter{Client: c, Reader: c, Remove: true, Log: logr.Discard()}
	remover.Register()
	if err := remover.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var left admissionregistrationv1.MutatingAdmissionPolicyList
	if err := c.List(ctx, &left); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range left.Items {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"kyverno-thing", "staging-pod-injection"}) {
		t.Errorf("policies after the webhook mode's removal: %v", names)
	}
	var bindings admissionregistrationv1.MutatingAdmissionPolicyBindingList
	if err := c.List(ctx, &bindings); err != nil {
		t.Fatal(err)
	}
	if len(bindings.Items) != 0 {
		t.Errorf("%d bindings left", len(bindings.Items))
	}
}

// TestPolicyRenderWakesRefused: a credential refused for a bound it
// shares (here, a namespace's keys) is woken when another credential
// pushes it past the bound and again when it fits, and its refusal is
// read off the same rendering the writer writes.
func TestPolicyRenderWakesRefused(t *testing.T) {
	cat := credential.NewCatalogue("regcred-system")
	tenant := func(name string, keys int) *v1alpha1.RegistryCredential {
		rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, Generation: 1}}
		for k := 0; k < keys; k++ {
			rc.Spec.Registries = append(rc.Spec.Registries, fmt.Sprintf("%s-%d.example.com", name, k))
		}
		rc.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
		return rc
	}
	cat.Put(tenant("b", 30))
	cat.MarkSynced()
	r := NewPolicyRender(cat, policy.Options{Namespace: "regcred-system", MaxKeysPerPolicy: 50})
	var woken []credential.Key
	r.wakeups.notify[credential.KindNamespaced] = func(k credential.Key) { woken = append(woken, k) }
	b := credential.Key{Kind: credential.KindNamespaced, Namespace: "team", Name: "b"}
	if why := r.Refusal(b); why != "" || len(woken) != 0 {
		t.Fatalf("alone: refused %q, woken %v", why, woken)
	}
	cat.Put(tenant("a", 30)) // first by name: b is now past the bound
	if why := r.Refusal(b); !strings.Contains(why, "past the bound") || !slices.Equal(woken, []credential.Key{b}) {
		t.Fatalf("after a: refused %q, woken %v", why, woken)
	}
	if n := len(r.Render().Refused); n != 1 {
		t.Errorf("%d refused in the rendering", n)
	}
	cat.Delete(tenant("a", 30))
	if why := r.Refusal(b); why != "" || len(woken) != 2 {
		t.Errorf("after a went: refused %q, woken %v", why, woken)
	}
}
