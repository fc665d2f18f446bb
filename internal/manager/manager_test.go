package manager_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/manager"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/controlplane"
	"regcred.dev/regcred/internal/testenv/testsuite"
)

var suite = testsuite.New(controlplane.WithSchemeAdder(v1alpha1.AddToScheme))

func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }

// TestShippedRBACIsEnough runs the manager as the ServiceAccount of the
// shipped manifests, bound by the shipped ClusterRole, with leader
// election on, through a credential's whole life.
func TestShippedRBACIsEnough(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	kubectl := testenv.Tool(t, "kubectl") // for kustomize
	cp := suite.ControlPlane(t)
	c := cp.Client
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	rendered, err := exec.Command(kubectl, "kustomize", filepath.Join(testenv.RepoRoot(), "config", "default")).Output()
	if err != nil {
		t.Fatalf("kustomize config/default: %v", err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytesReader(rendered), 4096)
	applied := map[string]int{}
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if len(u.Object) == 0 {
			continue
		}
		applied[u.GetKind()]++
		if u.GetKind() == "CustomResourceDefinition" {
			continue // installed by the harness from the same files
		}
		if err := c.Create(ctx, &u); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	for _, kind := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "CustomResourceDefinition"} {
		if applied[kind] == 0 {
			t.Errorf("config/default has no %s", kind)
		}
	}

	user, err := cp.Env.AddUser(envtest.User{Name: "system:serviceaccount:regcred-system:regcred-manager",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:regcred-system", "system:authenticated"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := manager.New(ctx, manager.Options{RestConfig: user.Config(), Namespace: "regcred-system", MetricsAddr: "0", ProbeAddr: "0", LeaderElect: true})
	if err != nil {
		t.Fatal(err)
	}
	errCh := make(chan error, 1)
	go func() { errCh <- mgr.Start(ctx) }()

	ns, err := cp.CreateNamespace(ctx, "rbac", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}); err != nil {
		t.Fatal(err)
	}
	data := testenv.DockerConfigJSON(t, "r.example.com", "u", "p")
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "regcred-system", Name: "src"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}); err != nil {
		t.Fatal(err)
	}
	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "rbac"}}
	cred.Spec.Registries = []string{"r.example.com"}
	cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
	if err := c.Create(ctx, cred); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		select {
		case err := <-errCh:
			return fmt.Errorf("manager stopped: %v", err)
		default:
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(cred), cred); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(cred.Status.Conditions, v1alpha1.ConditionReady) {
			return fmt.Errorf("not ready: %+v", cred.Status)
		}
		var sa corev1.ServiceAccount
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &sa); err != nil {
			return err
		}
		if len(sa.ImagePullSecrets) != 1 {
			return fmt.Errorf("ServiceAccount not patched")
		}
		return nil
	})
	var lease unstructured.Unstructured
	lease.SetAPIVersion("coordination.k8s.io/v1")
	lease.SetKind("Lease")
	if err := c.Get(ctx, client.ObjectKey{Namespace: "regcred-system", Name: "regcred-manager"}, &lease); err != nil {
		t.Errorf("leader election lease: %v", err)
	}
	if err := c.Delete(ctx, cred); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		err := c.Get(ctx, client.ObjectKeyFromObject(cred), cred)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("credential still there: %v %v", cred.Finalizers, err)
	})
	var events corev1.EventList
	if err := c.List(ctx, &events, client.InNamespace("default")); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range events.Items {
		if e.InvolvedObject.Name == "rbac" && e.Reason == v1alpha1.ReasonSynced {
			found = true
		}
	}
	if !found {
		t.Error("no Synced Event recorded under the shipped RBAC")
	}
}
