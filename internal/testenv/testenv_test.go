package testenv_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/testenv"
)

var suite = testenv.NewSuite()

func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }

func TestControlPlaneStoresPullSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
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
	if testing.Short() {
		t.Skip("integration test")
	}
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

func TestRegistryAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	for _, mode := range []testenv.AuthMode{testenv.Basic, testenv.Token} {
		t.Run(string(mode), func(t *testing.T) {
			reg := suite.Registry(t, mode)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			digest, err := reg.PushRandomImage(ctx, "team/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.ParseReference(reg.Ref("team/app:v1"))
			if err != nil {
				t.Fatal(err)
			}

			img, err := remote.Image(ref, reg.RemoteOptions(ctx, reg.Auth())...)
			if err != nil {
				t.Fatalf("pull with valid credentials: %v", err)
			}
			got, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if got != digest {
				t.Errorf("pulled digest %s, pushed %s", got, digest)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range layers {
				rc, err := l.Compressed()
				if err != nil {
					t.Fatalf("fetch layer: %v", err)
				}
				_ = rc.Close()
			}

			for _, tc := range []struct {
				name string
				auth authn.Authenticator
			}{
				{"anonymous", authn.Anonymous},
				{"wrong password", reg.WrongPasswordAuth()},
			} {
				_, err := remote.Image(ref, reg.RemoteOptions(ctx, tc.auth)...)
				var terr *transport.Error
				if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s pull: err = %v, want HTTP 401", tc.name, err)
				}
			}
		})
	}
}

func TestTokenRegistryScopesAccess(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	reg, err := testenv.StartRegistry(testenv.Token, testenv.WithUser(testenv.User{
		Name: "reader", Password: "reader-pass", Repositories: []string{"public/*"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, repo := range []string{"public/app:v1", "private/app:v1"} {
		if _, err := reg.PushRandomImage(ctx, repo); err != nil {
			t.Fatal(err)
		}
	}
	reader := &authn.Basic{Username: "reader", Password: "reader-pass"}
	if _, err := remote.Head(mustRef(t, reg.Ref("public/app:v1")), reg.RemoteOptions(ctx, reader)...); err != nil {
		t.Errorf("reader on public/app: %v", err)
	}
	_, err = remote.Head(mustRef(t, reg.Ref("private/app:v1")), reg.RemoteOptions(ctx, reader)...)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("reader on private/app: err = %v, want HTTP 401 (token without that scope)", err)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
