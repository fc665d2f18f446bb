package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/testenv"
)

// What tenants write is cached only as far as regcred reads it, and a
// write regcred makes from such a trimmed copy loses nothing of the live
// object: the ServiceAccount keeps its annotations, the repaired Secret its
// foreign annotation.
func TestTenantObjectsTrimmedInCache(t *testing.T) {
	c := startManager(t)
	ns := newNamespace(t, c, "trim", map[string]string{"trim": "yes"})
	createSource(t, c, regcredNamespace, "trim-src", testenv.DockerConfigJSON(t, "trim.example.com", "u", "p"))
	cred := clusterCred("trim", "trim-src", map[string]string{"trim": "yes"}, "trim.example.com")
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWait(t, c, cred) })
	secretName := credential.FromCluster(cred).SecretName()

	blob := strings.Repeat("x", 200<<10)
	sa := &corev1.ServiceAccount{}
	sa.Namespace, sa.Name = ns, "default"
	sa.Annotations = map[string]string{"tenant.example.com/blob": blob, "regcred.dev/token-audiences": "sts.amazonaws.com"}
	if err := c.Create(bg, sa); err != nil {
		t.Fatal(err)
	}
	waitPullSecrets(t, c, ns, "default", secretName)

	cached := running.GetClient()
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		var got corev1.ServiceAccount
		if err := cached.Get(ctx, client.ObjectKeyFromObject(sa), &got); err != nil {
			return err
		}
		if _, ok := got.Annotations["tenant.example.com/blob"]; ok {
			return fmt.Errorf("the cache holds the tenant's %d KiB annotation", len(blob)>>10)
		}
		if _, ok := got.Annotations[credential.AnnotationTokenAudiences]; ok {
			return fmt.Errorf("the cache holds the opt-in annotation, which is read past it")
		}
		if !strings.Contains(got.Annotations[credential.AnnotationPullSecrets], secretName) || len(got.ImagePullSecrets) != 1 {
			return fmt.Errorf("the cache lost what regcred reads: %v %v", got.Annotations, got.ImagePullSecrets)
		}
		return nil
	})
	var live corev1.ServiceAccount
	if err := c.Get(bg, client.ObjectKeyFromObject(sa), &live); err != nil {
		t.Fatal(err)
	}
	if live.Annotations["tenant.example.com/blob"] != blob {
		t.Error("patching the ServiceAccount dropped the tenant's annotation")
	}

	// Tamper with the managed Secret: an extra key (the cache then holds no
	// data) and a foreign annotation (the cache never holds it).
	var s corev1.Secret
	if err := c.Get(bg, client.ObjectKey{Namespace: ns, Name: secretName}, &s); err != nil {
		t.Fatal(err)
	}
	want := s.Data[corev1.DockerConfigJsonKey]
	s.Data["extra"] = []byte(strings.Repeat("y", 300<<10))
	s.Annotations["team.example.com/note"] = "keep me"
	if err := c.Update(bg, &s); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		var got corev1.Secret
		if err := c.Get(ctx, client.ObjectKeyFromObject(&s), &got); err != nil {
			return err
		}
		if len(got.Data) != 1 || string(got.Data[corev1.DockerConfigJsonKey]) != string(want) {
			return fmt.Errorf("the Secret was not repaired: %d keys", len(got.Data))
		}
		if got.Annotations["team.example.com/note"] != "keep me" {
			return fmt.Errorf("repairing the Secret dropped a foreign annotation: %v", got.Annotations)
		}
		return nil
	})
}
