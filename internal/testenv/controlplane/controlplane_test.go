package controlplane_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testsuite"
)

var suite = testsuite.New()

func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }

func TestControlPlaneStoresPullSecret(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	cp := suite.ControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ns, err := cp.CreateNamespace(ctx, "smoke", nil)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"auths":{"registry.example.com":{"auth":"dXNlcjpwYXNz"}}}`)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "pull", Namespace: ns},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: payload},
	}
	if err := cp.Client.Create(ctx, secret); err != nil {
		t.Fatalf("create secret: %v", err)
	}

	var got corev1.Secret
	if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pull"}, &got); err != nil {
		t.Fatalf("get secret: %v", err)
	}
	if got.Type != corev1.SecretTypeDockerConfigJson {
		t.Errorf("type = %q, want %q", got.Type, corev1.SecretTypeDockerConfigJson)
	}
	if string(got.Data[corev1.DockerConfigJsonKey]) != string(payload) {
		t.Errorf("data = %q, want %q", got.Data[corev1.DockerConfigJsonKey], payload)
	}

	// The API server validates dockerconfigjson Secrets: one without the key
	// is rejected, which proves a real apiserver (not a bare store) answered.
	bad := secret.DeepCopy()
	bad.ResourceVersion = ""
	bad.Name = "bad"
	bad.Data = map[string][]byte{"other": payload}
	if err := cp.Client.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), corev1.DockerConfigJsonKey) {
		t.Errorf("creating a dockerconfigjson Secret without %s: err = %v, want a validation error", corev1.DockerConfigJsonKey, err)
	}
}

func TestKubeconfigWorksWithKubectl(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	kubectl := testenv.Tool(t, "kubectl")
	cp := suite.ControlPlane(t)
	out, err := exec.Command(kubectl, "--kubeconfig", cp.Kubeconfig, "get", "namespace", "default", "-o", "name").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl: %v\n%s", err, out)
	}
	if strings.TrimSpace(string(out)) != "namespace/default" {
		t.Errorf("kubectl printed %q", out)
	}
}
