package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv"
)

func registryCred(ns, name, source, secretName string, registries ...string) *v1alpha1.RegistryCredential {
	rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	rc.Spec.Registries = registries
	rc.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: source}
	rc.Spec.SecretName = secretName
	return rc
}

// registryReady waits until the RegistryCredential's Ready condition has
// the status and reason (and, if given, the synced summary and a message
// containing messagePart) for its current generation.
func registryReady(t *testing.T, c client.Client, ns, name string, status metav1.ConditionStatus, reason, summary, messagePart string) *v1alpha1.RegistryCredential {
	t.Helper()
	var obj v1alpha1.RegistryCredential
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &obj); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
		if cond == nil {
			return fmt.Errorf("no Ready condition")
		}
		if cond.Status != status || cond.Reason != reason || (summary != "" && obj.Status.Namespaces.Summary != summary) ||
			!strings.Contains(cond.Message, messagePart) || obj.Status.ObservedGeneration != obj.Generation {
			return fmt.Errorf("Ready=%s/%s %q synced %s (gen %d/%d), want %s/%s %s containing %q", cond.Status, cond.Reason, cond.Message,
				obj.Status.Namespaces.Summary, obj.Status.ObservedGeneration, obj.Generation, status, reason, summary, messagePart)
		}
		return nil
	})
	return &obj
}

// TestRegistryCredentialForeignSecret: a RegistryCredential whose Secret
// name is held by a Secret regcred does not manage reports SyncFailed, the
// foreign Secret is left as it is, and the credential recovers once that
// Secret is gone.
func TestRegistryCredentialForeignSecret(t *testing.T) {
	c := startManager(t)
	ns := newNamespace(t, c, "rc-foreign", nil)
	createSA(t, c, ns, "default", nil)
	theirs := testenv.DockerConfigJSON(t, "harbor.example.com", "someone", "their-own")
	foreign := createSource(t, c, ns, "regcred-harbor", theirs)
	createSource(t, c, ns, "robot", testenv.DockerConfigJSON(t, "harbor.example.com", "robot", "p"))
	rc := registryCred(ns, "harbor", "robot", "", "harbor.example.com")
	if err := c.Create(bg, rc); err != nil {
		t.Fatal(err)
	}
	obj := registryReady(t, c, ns, "harbor", metav1.ConditionFalse, v1alpha1.ReasonSyncFailed, "0/1", "not managed by regcred")
	if obj.Status.Namespaces.Failed != 1 || len(obj.Status.Failures) != 1 || obj.Status.Failures[0].Namespace != ns {
		t.Errorf("status: %+v", obj.Status)
	}
	if got, s, err := secretData(bg, c, ns, "regcred-harbor"); err != nil || string(got) != string(theirs) || len(s.Labels) != 0 {
		t.Errorf("foreign Secret touched: %v %s", err, got)
	}
	waitPullSecrets(t, c, ns, "default")

	if err := c.Delete(bg, foreign); err != nil {
		t.Fatal(err)
	}
	registryReady(t, c, ns, "harbor", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1", "")
	waitSecretData(t, c, ns, "regcred-harbor", testenv.DockerConfigJSON(t, "harbor.example.com", "robot", "p"))
	waitPullSecrets(t, c, ns, "default", "regcred-harbor")
	deleteAndWait(t, c, rc)
}

// TestRegistryCredentialSecretNameClash: two RegistryCredentials asking for
// one Secret name; the first keeps it, the other reports SyncFailed naming
// the first, and recovers when given a name of its own.
func TestRegistryCredentialSecretNameClash(t *testing.T) {
	c := startManager(t)
	ns := newNamespace(t, c, "rc-clash", nil)
	createSource(t, c, ns, "robot-a", testenv.DockerConfigJSON(t, "a.example.com", "a", "pa"))
	createSource(t, c, ns, "robot-b", testenv.DockerConfigJSON(t, "b.example.com", "b", "pb"))
	first := registryCred(ns, "first", "robot-a", "pull", "a.example.com")
	if err := c.Create(bg, first); err != nil {
		t.Fatal(err)
	}
	registryReady(t, c, ns, "first", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1", "")
	second := registryCred(ns, "second", "robot-b", "pull", "b.example.com")
	if err := c.Create(bg, second); err != nil {
		t.Fatal(err)
	}
	registryReady(t, c, ns, "second", metav1.ConditionFalse, v1alpha1.ReasonSyncFailed, "0/1",
		fmt.Sprintf(`Secret name "pull" is also used by RegistryCredential/%s/first`, ns))
	registryReady(t, c, ns, "first", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1", "")
	waitSecretData(t, c, ns, "pull", testenv.DockerConfigJSON(t, "a.example.com", "a", "pa"))

	if err := c.Get(bg, client.ObjectKeyFromObject(second), second); err != nil {
		t.Fatal(err)
	}
	second.Spec.SecretName = "pull-b"
	if err := c.Update(bg, second); err != nil {
		t.Fatal(err)
	}
	registryReady(t, c, ns, "second", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1", "")
	waitSecretData(t, c, ns, "pull-b", testenv.DockerConfigJSON(t, "b.example.com", "b", "pb"))
	waitSecretData(t, c, ns, "pull", testenv.DockerConfigJSON(t, "a.example.com", "a", "pa"))
	deleteAndWait(t, c, second)
	deleteAndWait(t, c, first)
}

// TestRegistryCredentialMalformedSource: a malformed source sets Ready=False
// with SourceInvalid, keeps the copy, and a valid source makes it Ready
// again.
func TestRegistryCredentialMalformedSource(t *testing.T) {
	c := startManager(t)
	ns := newNamespace(t, c, "rc-malformed", nil)
	createSA(t, c, ns, "default", nil)
	good := testenv.DockerConfigJSON(t, "quay.io", "robot", "pass-1")
	src := createSource(t, c, ns, "robot", good)
	rc := registryCred(ns, "quay", "robot", "", "quay.io")
	if err := c.Create(bg, rc); err != nil {
		t.Fatal(err)
	}
	registryReady(t, c, ns, "quay", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1", "")
	waitSecretData(t, c, ns, "regcred-quay", good)

	src.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{"quay.io":{"auth":"bm90OmJhc2U2NCEhIQ*"}}}`)
	if err := c.Update(bg, src); err != nil {
		t.Fatal(err)
	}
	registryReady(t, c, ns, "quay", metav1.ConditionFalse, "SourceInvalid", "", `entry "quay.io": field "auth": not valid base64`)
	if got, _, _ := secretData(bg, c, ns, "regcred-quay"); string(got) != string(good) {
		t.Errorf("copy changed after a bad source: %s", got)
	}
	waitPullSecrets(t, c, ns, "default", "regcred-quay")

	fixed := testenv.DockerConfigJSON(t, "quay.io", "robot", "pass-2")
	if err := c.Get(bg, client.ObjectKeyFromObject(src), src); err != nil {
		t.Fatal(err)
	}
	src.Data[corev1.DockerConfigJsonKey] = fixed
	if err := c.Update(bg, src); err != nil {
		t.Fatal(err)
	}
	waitSecretData(t, c, ns, "regcred-quay", fixed)
	registryReady(t, c, ns, "quay", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1", "")
	deleteAndWait(t, c, rc)
}

// TestBothKindsFailAtOnce: a ClusterRegistryCredential and a
// RegistryCredential blocked in the same namespace at the same time each
// report SyncFailed, and each recovers.
func TestBothKindsFailAtOnce(t *testing.T) {
	c := startManager(t)
	sel := map[string]string{"regcred-test": "both-fail"}
	ns := newNamespace(t, c, "both-fail", sel)
	clusterForeign := createSource(t, c, ns, "regcred-both-cluster", testenv.DockerConfigJSON(t, "x.example.com", "x", "x"))
	tenantForeign := createSource(t, c, ns, "regcred-both-tenant", testenv.DockerConfigJSON(t, "y.example.com", "y", "y"))
	createSource(t, c, regcredNamespace, "both-cluster-source", testenv.DockerConfigJSON(t, "registry.example.com", "robot", "c"))
	createSource(t, c, ns, "both-tenant-source", testenv.DockerConfigJSON(t, "harbor.example.com", "robot", "t"))

	cred := clusterCred("both-cluster", "both-cluster-source", sel, "registry.example.com")
	rc := registryCred(ns, "both-tenant", "both-tenant-source", "", "harbor.example.com")
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(bg, rc); err != nil {
		t.Fatal(err)
	}
	clusterReady(t, c, "both-cluster", metav1.ConditionFalse, v1alpha1.ReasonSyncFailed, "0/1")
	registryReady(t, c, ns, "both-tenant", metav1.ConditionFalse, v1alpha1.ReasonSyncFailed, "0/1", "not managed by regcred")

	if err := c.Delete(bg, clusterForeign); err != nil {
		t.Fatal(err)
	}
	clusterReady(t, c, "both-cluster", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1")
	registryReady(t, c, ns, "both-tenant", metav1.ConditionFalse, v1alpha1.ReasonSyncFailed, "0/1", "not managed by regcred")
	if err := c.Delete(bg, tenantForeign); err != nil {
		t.Fatal(err)
	}
	registryReady(t, c, ns, "both-tenant", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1", "")
	deleteAndWait(t, c, rc)
	deleteAndWait(t, c, cred)
}
