package controller_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv"
)

// TestDeliveryNodeWritesNoSecret: a credential switched from Secrets to
// Both keeps its copies and ServiceAccount entries; switched to Node, its
// copies and entries go, its Ready reason says who serves it, and a
// namespace selected afterwards never gets a Secret.
func TestDeliveryNodeWritesNoSecret(t *testing.T) {
	c := startManager(t)
	sel := map[string]string{"regcred-test": "delivery"}
	ns := newNamespace(t, c, "delivery", sel)
	createSA(t, c, ns, "default", nil)
	createSource(t, c, regcredNamespace, "delivery-source", testenv.DockerConfigJSON(t, "delivery.example.com", "u", "p"))
	cred := clusterCred("delivery", "delivery-source", sel, "delivery.example.com")
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWait(t, c, cred) })
	waitPullSecrets(t, c, ns, "default", "regcred-delivery")

	setDelivery(t, c, "delivery", v1alpha1.DeliveryBoth)
	got := clusterReady(t, c, "delivery", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1")
	if got.Status.Delivery == nil || got.Status.Delivery.Mode != v1alpha1.DeliveryBoth || got.Status.SecretName != "regcred-delivery" {
		t.Errorf("Both: status.delivery %+v, secretName %q", got.Status.Delivery, got.Status.SecretName)
	}
	waitPullSecrets(t, c, ns, "default", "regcred-delivery")

	setDelivery(t, c, "delivery", v1alpha1.DeliveryNode)
	waitSecretGone(t, c, ns, "regcred-delivery")
	waitPullSecrets(t, c, ns, "default")
	got = clusterReady(t, c, "delivery", metav1.ConditionTrue, v1alpha1.ReasonNodeDelivery, "node 1")
	if got.Status.Delivery == nil || got.Status.Delivery.Mode != v1alpha1.DeliveryNode || got.Status.SecretName != "" {
		t.Errorf("Node: status.delivery %+v, secretName %q", got.Status.Delivery, got.Status.SecretName)
	}

	later := newNamespace(t, c, "delivery-later", sel)
	createSA(t, c, later, "default", nil)
	clusterReady(t, c, "delivery", metav1.ConditionTrue, v1alpha1.ReasonNodeDelivery, "node 2")
	var secrets corev1.SecretList
	if err := c.List(bg, &secrets, client.InNamespace(later)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		t.Errorf("Secret %s/%s written for a credential with delivery Node", later, s.Name)
	}

	// Back to Secrets: the copies come back.
	setDelivery(t, c, "delivery", v1alpha1.DeliverySecrets)
	waitPullSecrets(t, c, later, "default", "regcred-delivery")
	got = clusterReady(t, c, "delivery", metav1.ConditionTrue, v1alpha1.ReasonSynced, "2/2")
	if got.Status.Delivery != nil {
		t.Errorf("Secrets: status.delivery %+v, want none", got.Status.Delivery)
	}
}

func setDelivery(t *testing.T, c client.Client, name string, mode v1alpha1.DeliveryMode) {
	t.Helper()
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		var obj v1alpha1.ClusterRegistryCredential
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &obj); err != nil {
			return err
		}
		obj.Spec.Delivery = mode
		if err := c.Update(ctx, &obj); err != nil {
			return fmt.Errorf("set delivery %s: %w", mode, err)
		}
		return nil
	})
}
