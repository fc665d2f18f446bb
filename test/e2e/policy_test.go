package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/policy"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// TestPolicyInjection: Pods injected by the generated
// MutatingAdmissionPolicies, on the real node. The package's manager runs
// in webhook mode, so the credential turns the webhook off for itself
// (podInjection.enabled false: its Secret is still synced) and the test
// renders the policies for it as the manager's policy mode does
// (policy.Render of the catalogue), under a prefix of its own. The real
// API server runs them, and the kubelet pulls with the Secret they add:
// a Deployment in a namespace that existed before runs, and so does the
// first Pod of a brand-new namespace, whose Secret the namespace
// controller writes while the kubelet retries the pull.
func TestPolicyInjection(t *testing.T) {
	e := withRegcred(t)
	reg := e.registry(t, testregistry.Basic)
	e.sourceSecret(t, regcredNS, "policy-robot", reg)
	cred := e.clusterCredential(t, "policy-inject", "policy-robot", labels("e2e", "policy"), []string{reg.Host}, func(c *v1alpha1.ClusterRegistryCredential) {
		c.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
		c.Spec.PodInjection.Enabled = ptr.To(false)
	})

	// The catalogue as the manager would hold it with the credential's
	// injection on.
	cat := credential.NewCatalogue(regcredNS)
	on := cred.DeepCopy()
	on.Spec.PodInjection.Enabled = nil
	cat.Put(on)
	cat.MarkSynced()
	r := policy.Render(cat.Injection(), policy.Options{Namespace: regcredNS, Prefix: "e2e-pod-injection"})
	if len(r.Policies) != 1 || r.Carried != 1 {
		t.Fatalf("rendered %d policies carrying %d credentials", len(r.Policies), r.Carried)
	}
	for _, o := range []client.Object{r.Policies[0], r.Bindings[0]} {
		e.create(t, o)
		t.Cleanup(func() { _ = e.c.Delete(bg, o) })
	}

	existing := e.namespace(t, "policy", labels("e2e", "policy"))
	secret := "regcred-policy-inject"
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		return e.c.Get(ctx, client.ObjectKey{Namespace: existing, Name: secret}, &corev1.Secret{})
	})
	// The API server loads policies within a second of a change.
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		p := pod(existing, "probe", reg.Ref("app:1"))
		if err := e.c.Create(ctx, p, client.DryRunAll); err != nil {
			return err
		}
		if !slices.Equal(secretNames(p.Spec.ImagePullSecrets), []string{secret}) {
			return fmt.Errorf("the policy has not injected yet: %v", p.Spec.ImagePullSecrets)
		}
		return nil
	})
	took := e.deploymentRunning(t, existing, reg.Ref("app:1"))
	var pods corev1.PodList
	if err := e.c.List(bg, &pods, client.InNamespace(existing), client.MatchingLabels{"app": "web"}); err != nil || len(pods.Items) == 0 {
		t.Fatalf("Pods of the Deployment: %v", err)
	}
	p := pods.Items[0]
	if !slices.Equal(secretNames(p.Spec.ImagePullSecrets), []string{secret}) || p.Annotations[policy.AnnotationInjected] != "policy-inject" {
		t.Errorf("the Pod's imagePullSecrets %v, annotations %v: want the policy's", p.Spec.ImagePullSecrets, p.Annotations)
	}
	t.Logf("a Deployment in a namespace that existed ran %s after its creation", took)

	// A brand-new namespace: the Pod is admitted at once, naming a
	// Secret the namespace controller has yet to write.
	start := time.Now()
	fresh := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "policy-new-", Labels: labels("e2e", "policy")}}
	e.create(t, fresh)
	t.Cleanup(func() { _ = e.c.Delete(bg, fresh) })
	e.create(t, pod(fresh.Name, "first", reg.Ref("app:1")))
	e.waitRunning(t, fresh.Name, "first")
	var first corev1.Pod
	if err := e.c.Get(bg, client.ObjectKey{Namespace: fresh.Name, Name: "first"}, &first); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(secretNames(first.Spec.ImagePullSecrets), []string{secret}) {
		t.Errorf("the first Pod's imagePullSecrets %v, want the policy's %s", first.Spec.ImagePullSecrets, secret)
	}
	t.Logf("the first Pod of a brand-new namespace ran %s after the namespace was created", time.Since(start).Round(10*time.Millisecond))
}
