package policy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	celconfig "k8s.io/apiserver/pkg/apis/cel"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/policy"
	"regcred.dev/regcred/internal/policy/policytest"
)

// catalogueOfKeys is n ClusterRegistryCredentials of keysEach keys, half
// of them globs.
func catalogueOfKeys(n, keysEach int) *credential.Catalogue {
	cat := credential.NewCatalogue("regcred-system")
	for i := 0; i < n; i++ {
		var keys []string
		for k := 0; k < keysEach; k++ {
			if k%2 == 0 {
				keys = append(keys, fmt.Sprintf("registry-%03d-%02d.example.com/team", i, k))
			} else {
				keys = append(keys, fmt.Sprintf("*.mirror-%03d-%02d.example.net:5000", i, k))
			}
		}
		cat.Put(policytest.Cred(fmt.Sprintf("c%03d", i), keys...))
	}
	cat.MarkSynced()
	return cat
}

func podOfImages(n int) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "apps"}}
	for i := 0; i < n; i++ {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i),
			Image: fmt.Sprintf("registry-%03d-00.example.com/team/app-%d:1", i%200, i)})
	}
	return p
}

// TestCostWithinBudget: at the bound of keys one policy carries, a Pod
// of 64 distinct images (every credential acting) spends less than a
// quarter of the CEL budget of one expression, so the policy never fails on
// cost for a Pod a person writes. The figures are in
// docs/pod-injection-policies.md.
func TestCostWithinBudget(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}
	for _, tc := range []struct{ creds, keys, images int }{
		{20, 2, 3}, {100, 2, 3}, {200, 2, 3}, {policy.DefaultMaxKeysPerPolicy / 2, 2, 64},
		{policy.DefaultMaxKeysPerPolicy / policy.DefaultMaxKeysPerCredential, policy.DefaultMaxKeysPerCredential, 64},
	} {
		r := policy.Render(catalogueOfKeys(tc.creds, tc.keys).Injection(), policy.Options{Namespace: "regcred-system"})
		if len(r.Policies) != 1 || len(r.Refused) != 0 {
			t.Fatalf("%d×%d keys: %d policies, refused %v", tc.creds, tc.keys, len(r.Policies), r.Refused)
		}
		ev, err := policytest.New(r.Policies)
		if err != nil {
			t.Fatal(err)
		}
		res, err := ev.Admit(context.Background(), podOfImages(tc.images), ns)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Pod.Spec.ImagePullSecrets) == 0 {
			t.Fatalf("%d×%d keys, %d images: nothing injected", tc.creds, tc.keys, tc.images)
		}
		t.Logf("%d credentials × %d keys, %d images: CEL cost %d (%.2f%% of one expression's limit)", tc.creds, tc.keys, tc.images, res.Cost, 100*float64(res.Cost)/celconfig.PerCallLimit)
		if tc.images == 64 && res.Cost > celconfig.PerCallLimit/4 {
			t.Errorf("%d credentials × %d keys, 64 images: cost %d, over a quarter of %d", tc.creds, tc.keys, res.Cost, celconfig.PerCallLimit)
		}
	}
}

// TestSplitAndRefuse: the cluster credentials and the mirrors share the
// first policy; each namespace's RegistryCredentials have a policy bound
// to that namespace alone, past whose bound they are refused by name
// order; a credential with more keys than one credential may carry is
// refused, never carried in part.
func TestSplitAndRefuse(t *testing.T) {
	cat := credential.NewCatalogue("regcred-system")
	for ns := 0; ns < 30; ns++ {
		for j := 0; j < 2; j++ {
			rc := policytest.Tenant(fmt.Sprintf("ns-%02d", ns), fmt.Sprintf("rc-%d", j), 10)
			cat.Put(rc)
		}
	}
	// One namespace of 50 credentials of 10 keys: 40 fit its policy, the
	// last 10 (by name) are refused.
	for j := 0; j < 50; j++ {
		cat.Put(policytest.Tenant("crowded", fmt.Sprintf("rc-%02d", j), 10))
	}
	big := policytest.Cred("too-big")
	for k := 0; k <= policy.DefaultMaxKeysPerCredential; k++ {
		big.Spec.Registries = append(big.Spec.Registries, fmt.Sprintf("r%d.example.com", k))
	}
	cat.Put(big)
	cat.Put(policytest.Cred("shared", "shared.example.com"))
	cat.MarkSynced()
	r := policy.Render(cat.Injection(), policy.Options{Namespace: "regcred-system"})
	if len(r.Refused) != 11 || r.Refused[0].Key.Name != "too-big" || r.Refused[1].Key.Name != "rc-40" || r.Refused[10].Key.Name != "rc-49" {
		t.Fatalf("refused %v", r.Refused)
	}
	if r.Carried != 101 {
		t.Errorf("carried %d, want 101", r.Carried)
	}
	// The first policy, then one for each of the 31 namespaces.
	if len(r.Policies) != 32 || len(r.Bindings) != 32 {
		t.Fatalf("%d policies, %d bindings", len(r.Policies), len(r.Bindings))
	}
	for i, p := range r.Policies {
		var bound []string
		for _, e := range p.Spec.MatchConstraints.NamespaceSelector.MatchExpressions {
			if e.Operator == metav1.LabelSelectorOpIn {
				bound = e.Values
			}
		}
		switch {
		case i == 0 && (p.Name != "regcred-pod-injection" || bound != nil):
			t.Errorf("first policy %s bound to %v, want regcred-pod-injection for every namespace", p.Name, bound)
		case i > 0 && (len(bound) != 1 || p.Name != "regcred-pod-injection-"+bound[0]):
			t.Errorf("policy %s bound to %v, want one namespace, its name", p.Name, bound)
		}
	}
	ev, err := policytest.New(r.Policies)
	if err != nil {
		t.Fatal(err)
	}
	// Every tenant's Pod gets its own two Secrets and the shared one.
	for ns := 0; ns < 30; ns++ {
		name := fmt.Sprintf("ns-%02d", ns)
		p := policytest.Pod(fmt.Sprintf("%s-k0.example.com/app:1", name), "shared.example.com/app:1")
		p.Namespace = name
		res, err := ev.Admit(context.Background(), p, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(res.Pod.Spec.ImagePullSecrets); got != 3 {
			t.Errorf("%s: %d Secrets added, want 3: %v", name, got, res.Pod.Spec.ImagePullSecrets)
		}
	}
}

// TestHostileTenantStaysInItsNamespace: a tenant whose registry keys are
// as long and as glob-heavy as the API allows gets a policy of its own,
// with its credentials past the expression bound refused; every policy
// still compiles, and another namespace's Pods cost what they cost
// without that tenant.
func TestHostileTenantStaysInItsNamespace(t *testing.T) {
	hostile := func(cat *credential.Catalogue) {
		for j := 0; j < 6; j++ {
			rc := policytest.Tenant("hostile", fmt.Sprintf("rc-%d", j), 0)
			for k := 0; k < policy.DefaultMaxKeysPerCredential; k++ {
				rc.Spec.Registries = append(rc.Spec.Registries, fmt.Sprintf("*.*/%s%d", strings.Repeat(".", 240), k))
			}
			cat.Put(rc)
		}
	}
	render := func(withHostile bool) *policy.Rendered {
		cat := credential.NewCatalogue("regcred-system")
		cat.Put(policytest.Cred("shared", "shared.example.com", "*.example.org"))
		cat.Put(policytest.Tenant("quiet", "rc", 4))
		if withHostile {
			hostile(cat)
		}
		cat.MarkSynced()
		return policy.Render(cat.Injection(), policy.Options{Namespace: "regcred-system"})
	}
	r := render(true)
	if len(r.Refused) == 0 {
		t.Fatal("no hostile credential refused: the bound is not reached")
	}
	for _, x := range r.Refused {
		if x.Key.Namespace != "hostile" || !strings.Contains(x.Reason, "regcred-pod-injection-hostile") {
			t.Errorf("refused %s: %s", x.Key.Display(), x.Reason)
		}
	}
	for _, p := range r.Policies {
		for _, v := range p.Spec.Variables {
			if len(v.Expression) > policy.DefaultMaxExpressionLength {
				t.Errorf("policy %s variable %s: %d characters", p.Name, v.Name, len(v.Expression))
			}
		}
	}
	ev, err := policytest.New(r.Policies)
	if err != nil {
		t.Fatalf("the policies do not compile: %v", err)
	}
	quiet, err := policytest.New(render(false).Policies)
	if err != nil {
		t.Fatal(err)
	}
	images := make([]string, 32)
	for i := range images {
		images[i] = fmt.Sprintf("quay.io/app-%d:1", i)
	}
	images[0] = "quiet-k0.example.com/app:1"
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "quiet"}}
	pod := policytest.Pod(images...)
	pod.Namespace = "quiet"
	got, err := ev.Admit(context.Background(), pod, ns)
	if err != nil {
		t.Fatal(err)
	}
	want, err := quiet.Admit(context.Background(), pod, ns)
	if err != nil {
		t.Fatal(err)
	}
	if got.Cost != want.Cost || len(got.Pod.Spec.ImagePullSecrets) != 1 {
		t.Errorf("namespace quiet with the hostile tenant: cost %d, Secrets %v; without: cost %d", got.Cost, got.Pod.Spec.ImagePullSecrets, want.Cost)
	}

	// Without the bound the hostile namespace's policy could not be
	// written: the API server's CEL parser refuses it.
	cat := credential.NewCatalogue("regcred-system")
	hostile(cat)
	cat.MarkSynced()
	unbound := policy.Render(cat.Injection(), policy.Options{Namespace: "regcred-system", MaxExpressionLength: 1 << 30})
	if len(unbound.Refused) != 0 {
		t.Fatalf("refused without the bound: %v", unbound.Refused)
	}
	if _, err := policytest.New(unbound.Policies); err == nil {
		t.Error("the unbounded hostile policy compiles: the bound guards nothing")
	} else {
		t.Logf("unbounded: %v", err)
	}
}
