package controller_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/testenv"
)

const wait = 30 * time.Second

var bg = context.Background()

func newNamespace(t *testing.T, c client.Client, prefix string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	if err := c.Create(bg, ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func createNamespace(t *testing.T, c client.Client, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := c.Create(bg, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func createSA(t *testing.T, c client.Client, ns, name string, labels map[string]string, pullSecrets ...string) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
	for _, p := range pullSecrets {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: p})
	}
	if err := c.Create(bg, sa); err != nil {
		t.Fatal(err)
	}
}

func dockerConfig(t *testing.T, host, user, pass string) []byte {
	t.Helper()
	b, err := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{host: {Username: user, Password: pass}}}).MarshalDockerConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func createSource(t *testing.T, c client.Client, ns, name string, data []byte) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
	if err := c.Create(bg, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func clusterCred(name, source string, selector map[string]string, registries ...string) *v1alpha1.ClusterRegistryCredential {
	c := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: name}}
	c.Spec.Registries = registries
	c.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: source}
	if selector != nil {
		c.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: selector}
	}
	return c
}

// secretData returns the .dockerconfigjson of ns/name, or an error saying
// why it is not there.
func secretData(ctx context.Context, c client.Client, ns, name string) ([]byte, *corev1.Secret, error) {
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		return nil, nil, err
	}
	return s.Data[corev1.DockerConfigJsonKey], &s, nil
}

func waitSecretData(t *testing.T, c client.Client, ns, name string, want []byte) {
	t.Helper()
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		got, _, err := secretData(ctx, c, ns, name)
		if err != nil {
			return err
		}
		if string(got) != string(want) {
			return fmt.Errorf("%s/%s holds other data", ns, name)
		}
		return nil
	})
}

func waitSecretGone(t *testing.T, c client.Client, ns, name string) {
	t.Helper()
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		_, _, err := secretData(ctx, c, ns, name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("%s/%s still exists (err %v)", ns, name, err)
	})
}

func pullSecretsOf(ctx context.Context, c client.Client, ns, sa string) ([]string, error) {
	var obj corev1.ServiceAccount
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: sa}, &obj); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range obj.ImagePullSecrets {
		out = append(out, r.Name)
	}
	return out, nil
}

func waitPullSecrets(t *testing.T, c client.Client, ns, sa string, want ...string) {
	t.Helper()
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		got, err := pullSecretsOf(ctx, c, ns, sa)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s/%s imagePullSecrets = %v, want %v", ns, sa, got, want)
		}
		return nil
	})
}

func clusterReady(t *testing.T, c client.Client, name string, status metav1.ConditionStatus, reason, summary string) *v1alpha1.ClusterRegistryCredential {
	t.Helper()
	var obj v1alpha1.ClusterRegistryCredential
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &obj); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
		if cond == nil {
			return fmt.Errorf("no Ready condition")
		}
		if cond.Status != status || cond.Reason != reason || (summary != "" && obj.Status.Namespaces.Summary != summary) ||
			obj.Status.ObservedGeneration != obj.Generation {
			return fmt.Errorf("Ready=%s/%s %q synced %s (gen %d/%d), want %s/%s %s", cond.Status, cond.Reason, cond.Message,
				obj.Status.Namespaces.Summary, obj.Status.ObservedGeneration, obj.Generation, status, reason, summary)
		}
		return nil
	})
	return &obj
}

func deleteAndWait(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Delete(bg, obj); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("%s still exists (finalizers %v, err %v)", obj.GetName(), obj.GetFinalizers(), err)
	})
}

// eventsFor lists the notes of Events regarding the object.
func eventsFor(ctx context.Context, c client.Client, name string) (string, error) {
	var list corev1.EventList
	if err := c.List(ctx, &list); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			fmt.Fprintf(&b, "%s %s: %s\n", e.Type, e.Reason, e.Message)
		}
	}
	return b.String(), nil
}
