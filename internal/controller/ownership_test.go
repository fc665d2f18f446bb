package controller_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/testenv"
)

// createRaw creates a Secret as a person would, and returns it as stored.
func createRaw(t *testing.T, c client.Client, s *corev1.Secret) *corev1.Secret {
	t.Helper()
	if err := c.Create(bg, s); err != nil {
		t.Fatal(err)
	}
	return s.DeepCopy()
}

// assertUntouched fails when the Secret changed in any way since before:
// the same resourceVersion means nothing wrote it.
func assertUntouched(t *testing.T, c client.Client, before *corev1.Secret) {
	t.Helper()
	var now corev1.Secret
	if err := c.Get(bg, client.ObjectKeyFromObject(before), &now); err != nil {
		t.Errorf("Secret %s/%s: %v", before.Namespace, before.Name, err)
		return
	}
	if now.ResourceVersion != before.ResourceVersion || !reflect.DeepEqual(now.Data, before.Data) || now.Type != before.Type ||
		!reflect.DeepEqual(now.Labels, before.Labels) || !reflect.DeepEqual(now.Annotations, before.Annotations) ||
		!reflect.DeepEqual(now.OwnerReferences, before.OwnerReferences) || now.DeletionTimestamp != nil {
		t.Errorf("Secret %s/%s was changed: resourceVersion %s→%s, type %s, labels %v, annotations %v, owners %v, deleting %v",
			before.Namespace, before.Name, before.ResourceVersion, now.ResourceVersion, now.Type, now.Labels, now.Annotations,
			now.OwnerReferences, now.DeletionTimestamp != nil)
	}
}

// TestLabelAloneIsNotOwnership: a Secret is regcred's only when the label,
// the owner annotation and an owner reference to the live credential all
// agree. A person's Secrets that carry only some of them, under the
// credential's Secret name or another, survive sync and the credential's
// deletion byte for byte, and the credential reports the conflicts.
func TestLabelAloneIsNotOwnership(t *testing.T) {
	c := startManager(t)
	sel := map[string]string{"regcred-test": "ownership"}
	labelOnlyNS := newNamespace(t, c, "own-label", sel)
	forgedNS := newNamespace(t, c, "own-forged", sel)
	noLabelNS := newNamespace(t, c, "own-nolabel", sel)
	okNS := newNamespace(t, c, "own-ok", sel)
	const name = "regcred-ownership"
	annotation := map[string]string{credential.AnnotationCredential: "ClusterRegistryCredential/ownership"}
	managed := map[string]string{credential.LabelManaged: "true"}

	labelOnly := createRaw(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: labelOnlyNS, Name: name, Labels: managed},
		Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"note": []byte("a person's own")}})
	holder := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: forgedNS, Name: "holder"}}
	if err := c.Create(bg, holder); err != nil {
		t.Fatal(err)
	}
	forged := createRaw(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: forgedNS, Name: name, Labels: managed, Annotations: annotation,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "holder", UID: holder.UID}}},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: testenv.DockerConfigJSON(t, "registry.example.com", "me", "mine")}})
	noLabel := createRaw(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: noLabelNS, Name: name, Annotations: annotation},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: testenv.DockerConfigJSON(t, "registry.example.com", "me", "mine")}})
	// Under a name no credential asks for: the cleanup of Secrets no
	// longer wanted must not take it for a stale copy.
	stray := createRaw(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: labelOnlyNS, Name: "stray", Labels: managed, Annotations: annotation},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: testenv.DockerConfigJSON(t, "registry.example.com", "me", "mine")}})

	data := testenv.DockerConfigJSON(t, "registry.example.com", "robot", "p")
	createSource(t, c, regcredNamespace, "ownership-source", data)
	cred := clusterCred("ownership", "ownership-source", sel, "registry.example.com")
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	waitSecretData(t, c, okNS, name, data)
	clusterReady(t, c, "ownership", metav1.ConditionFalse, v1alpha1.ReasonSyncFailed, "1/4")
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		var obj v1alpha1.ClusterRegistryCredential
		if err := c.Get(ctx, client.ObjectKeyFromObject(cred), &obj); err != nil {
			return err
		}
		failed := map[string]bool{}
		for _, f := range obj.Status.Failures {
			if strings.Contains(f.Message, "not managed by regcred") {
				failed[f.Namespace] = true
			}
		}
		if obj.Status.Namespaces.Failed != 3 || !failed[labelOnlyNS] || !failed[forgedNS] || !failed[noLabelNS] {
			return fmt.Errorf("status: %+v", obj.Status)
		}
		return nil
	})
	for _, s := range []*corev1.Secret{labelOnly, forged, noLabel, stray} {
		assertUntouched(t, c, s)
	}
	deleteAndWait(t, c, cred)
	waitSecretGone(t, c, okNS, name)
	for _, s := range []*corev1.Secret{labelOnly, forged, noLabel, stray} {
		assertUntouched(t, c, s)
	}
}

// removeFinalizers lets a held Secret go at the end of a test.
func removeFinalizers(t *testing.T, c client.Client, ns, name string) {
	t.Cleanup(func() {
		var s corev1.Secret
		if err := c.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
			return
		}
		patch := client.MergeFrom(s.DeepCopy())
		s.Finalizers = nil
		if err := c.Patch(bg, &s, patch); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("remove finalizers of %s/%s: %v", ns, name, err)
		}
	})
}

// TestForeignFinalizerDoesNotHoldDeletion: a forged managed Secret with a
// finalizer of someone else's, and a real copy someone put such a
// finalizer on, do not keep a deleted credential forever: the forged one
// is not the credential's, and a copy being deleted counts as removed.
func TestForeignFinalizerDoesNotHoldDeletion(t *testing.T) {
	c := startManager(t)
	sel := map[string]string{"regcred-test": "held"}
	ns := newNamespace(t, c, "held", sel)
	forged := createRaw(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "forged-held",
		Labels:      map[string]string{credential.LabelManaged: "true"},
		Annotations: map[string]string{credential.AnnotationCredential: "ClusterRegistryCredential/held"},
		Finalizers:  []string{"example.com/hold"}},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: testenv.DockerConfigJSON(t, "registry.example.com", "me", "mine")}})
	removeFinalizers(t, c, ns, forged.Name)

	data := testenv.DockerConfigJSON(t, "registry.example.com", "robot", "p")
	createSource(t, c, regcredNamespace, "held-source", data)
	cred := clusterCred("held", "held-source", sel, "registry.example.com")
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	waitSecretData(t, c, ns, "regcred-held", data)
	clusterReady(t, c, "held", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1")
	_, held, err := secretData(bg, c, ns, "regcred-held")
	if err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(held.DeepCopy())
	held.Finalizers = append(held.Finalizers, "example.com/hold")
	if err := c.Patch(bg, held, patch); err != nil {
		t.Fatal(err)
	}
	removeFinalizers(t, c, ns, "regcred-held")

	deleteAndWait(t, c, cred)
	assertUntouched(t, c, forged)
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		_, s, err := secretData(ctx, c, ns, "regcred-held")
		if err != nil || s.DeletionTimestamp == nil {
			return fmt.Errorf("the copy is not being deleted (err %v)", err)
		}
		return nil
	})
}

// TestOnlyCoveredEntriesAreCopied: a dockerconfigjson source with logins
// for several registries is copied with only the entries spec.registries
// covers.
func TestOnlyCoveredEntriesAreCopied(t *testing.T) {
	c := startManager(t)
	sel := map[string]string{"regcred-test": "covered"}
	ns := newNamespace(t, c, "covered", sel)
	both, err := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{
		"harbor.example.com": {Username: "robot", Password: "harbor-pass"},
		"other.example.com":  {Username: "someone", Password: "other-pass"},
	}}).MarshalDockerConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	createSource(t, c, regcredNamespace, "covered-source", both)
	cred := clusterCred("covered", "covered-source", sel, "harbor.example.com")
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	waitSecretData(t, c, ns, "regcred-covered", testenv.DockerConfigJSON(t, "harbor.example.com", "robot", "harbor-pass"))
	clusterReady(t, c, "covered", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1")
	deleteAndWait(t, c, cred)
}
