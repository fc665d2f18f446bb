package webhook_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/webhook"
)

// TestTenantCannotTakeClusterSecretName: a tenant's RegistryCredential
// asking for the Secret name a ClusterRegistryCredential already holds in
// its namespace loses the claim, as in the namespace controller, on the
// webhook's path too: a Pod that needs the tenant's credential does not
// make the webhook take the Secret over, and does not get that Secret.
func TestTenantCannotTakeClusterSecretName(t *testing.T) {
	c := env(t)
	ctx := context.Background()
	ns := namespace(t, c, nil)
	var before corev1.Secret
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "regcred-harbor"}, &before)
	})
	var harbor v1alpha1.ClusterRegistryCredential
	if err := c.Get(ctx, client.ObjectKey{Name: "harbor"}, &harbor); err != nil {
		t.Fatal(err)
	}

	data := testenv.DockerConfigJSON(t, "tenant.example.com", "tenant", "tp")
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant-robot"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}); err != nil {
		t.Fatal(err)
	}
	rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant"}}
	rc.Spec.Registries = []string{"tenant.example.com"}
	rc.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "tenant-robot"}
	rc.Spec.SecretName = "regcred-harbor"
	rc.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
	if err := c.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Delete(ctx, rc) }()
	conflicting := func(ctx context.Context) error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(rc), rc); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(rc.Status.Conditions, v1alpha1.ConditionReady)
		if cond == nil || cond.Reason != v1alpha1.ReasonSyncFailed || !strings.Contains(cond.Message, "also used by ClusterRegistryCredential/harbor") {
			return fmt.Errorf("tenant's Ready condition %+v, want SyncFailed naming the ClusterRegistryCredential", cond)
		}
		return nil
	}
	testenv.Eventually(t, 30*time.Second, conflicting)

	p := createPod(t, c, ns, nil, "tenant.example.com/app:1")
	if got := secrets(p); slices.Contains(got, "regcred-harbor") {
		t.Errorf("the tenant's Pod got the ClusterRegistryCredential's Secret: %v", got)
	}
	if inj := p.Annotations[webhook.AnnotationInjected]; strings.Contains(inj, "tenant") {
		t.Errorf("injected annotation %q names the tenant's credential", inj)
	}
	var after corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "regcred-harbor"}, &after); err != nil {
		t.Fatal(err)
	}
	if string(after.Data[corev1.DockerConfigJsonKey]) != string(before.Data[corev1.DockerConfigJsonKey]) ||
		after.Annotations[credential.AnnotationCredential] != "ClusterRegistryCredential/harbor" ||
		len(after.OwnerReferences) != 1 || after.OwnerReferences[0].UID != harbor.UID {
		t.Errorf("the ClusterRegistryCredential's Secret was taken over: annotations %v, owners %v, same data %v", after.Annotations,
			after.OwnerReferences, string(after.Data[corev1.DockerConfigJsonKey]) == string(before.Data[corev1.DockerConfigJsonKey]))
	}
	// The harbor Pods of the namespace still get it.
	if got := secrets(createPod(t, c, ns, nil, "harbor.internal/team/app:1")); !slices.Equal(got, []string{"regcred-harbor"}) {
		t.Errorf("a harbor Pod got %v, want [regcred-harbor]", got)
	}
	testenv.Eventually(t, 10*time.Second, conflicting)
}
