package controller

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/testenv"
)

// TestConflictKeepsServiceAccountEntry: when rewriting a managed Secret
// fails with a conflict, the Secret is still there, and so must be the
// ServiceAccount entry that points at it: dropping it would leave the Pods
// created until the retry without their pull Secret.
func TestConflictKeepsServiceAccountEntry(t *testing.T) {
	scheme, err := credential.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	const ns, regcredNS = "team", "regcred-system"
	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "harbor", UID: "uid-harbor"}}
	cred.Spec.Registries = []string{"harbor.example.com"}
	cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "robot"}
	c := credential.FromCluster(cred)
	newData := testenv.DockerConfigJSON(t, "harbor.example.com", "robot", "new")
	oldData := testenv.DockerConfigJSON(t, "harbor.example.com", "robot", "old")

	cat := credential.NewCatalogue(regcredNS)
	cat.Put(cred)
	r := &NamespaceReconciler{regcredNamespace: regcredNS, catalogue: cat, failures: newFailures(), recorder: events.NewFakeRecorder(10)}
	managed := r.desiredSecret(c, ns, "regcred-harbor", oldData) // out of date: to be rewritten
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		cred,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNS, Name: "robot"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: newData}},
		managed,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default",
			Annotations: map[string]string{credential.AnnotationPullSecrets: "regcred-harbor"}},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred-harbor"}}},
	}
	conflicts := 0
	cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Update: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if _, ok := obj.(*corev1.Secret); ok {
				conflicts++
				return apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, obj.GetName(), nil)
			}
			return cl.Update(ctx, obj, opts...)
		},
	}).Build()
	r.client, r.apiReader = cl, cl
	r.renders = newRenderer(cl, regcredNS, nil, nil)

	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKey{Name: ns}}); !apierrors.IsConflict(err) {
		t.Fatalf("Reconcile: %v, want the conflict back for a retry", err)
	}
	if conflicts == 0 {
		t.Fatal("the Secret was not rewritten: the test does not reach the conflict")
	}
	var sa corev1.ServiceAccount
	if err := cl.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "default"}, &sa); err != nil {
		t.Fatal(err)
	}
	if len(sa.ImagePullSecrets) != 1 || sa.ImagePullSecrets[0].Name != "regcred-harbor" || sa.Annotations[credential.AnnotationPullSecrets] != "regcred-harbor" {
		t.Errorf("ServiceAccount after a conflict: imagePullSecrets %v, annotations %v", sa.ImagePullSecrets, sa.Annotations)
	}
}
