package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/manager/inprocess"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/fakecloud"
	"regcred.dev/regcred/internal/testenv/testcluster"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

const regcredNS = "regcred-system"

var (
	regcredOnce sync.Once
	regcredErr  error
	// cloudTrust holds the CAs of the fake clouds tests start; regcred's
	// cloud client trusts them.
	cloudTrust = &fakecloud.Trust{}
)

// withRegcred is the cluster with one regcred manager (controllers and the
// webhook, registered with the API server by URL on loopback) running in
// the test process for the whole package.
func withRegcred(t *testing.T) env {
	t.Helper()
	e := cluster(t)
	regcredOnce.Do(func() { regcredErr = startRegcred(e.Cluster) })
	if regcredErr != nil {
		t.Fatalf("start regcred: %v", regcredErr)
	}
	return e
}

func startRegcred(cl *testcluster.Cluster) error {
	ctx, cancel := context.WithCancel(context.Background())
	certDir, err := os.MkdirTemp("", "regcred-e2e-webhook-")
	if err != nil {
		cancel()
		return err
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	port, err := freePort()
	if err != nil {
		cancel()
		return err
	}
	done, err := inprocess.Start(ctx, cl.Config, inprocess.Options{Namespace: regcredNS, CertDir: certDir,
		Cloud: cloud.Env{HTTPClient: cloudTrust.Client()}, Port: port, NodeCredentials: &brokerOptions})
	suite.OnStop(func() {
		cancel()
		if done != nil {
			<-done
		}
		_ = os.RemoveAll(certDir)
	})
	if err != nil {
		return err
	}
	return configureNode(cl, fmt.Sprintf("https://127.0.0.1:%d", port))
}

// sourceSecret writes the registry user's credential as a source Secret.
func (e env) sourceSecret(t *testing.T, ns, name string, reg *testregistry.Registry) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: testenv.DockerConfigJSON(t, reg.Host, reg.User.Name, reg.User.Password)}}
	if err := e.c.Create(bg, s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Delete(bg, s) })
	return s
}

// clusterCredential creates a ClusterRegistryCredential for reg's host,
// reading sourceName in regcred's namespace, for namespaces labelled
// selector, and deletes it (waiting for its cleanup) when the test ends.
func (e env) clusterCredential(t *testing.T, name, sourceName string, selector map[string]string, registries []string, mutate func(*v1alpha1.ClusterRegistryCredential)) *v1alpha1.ClusterRegistryCredential {
	t.Helper()
	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: name}}
	cred.Spec.Registries = registries
	cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: sourceName}
	cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: selector}
	if mutate != nil {
		mutate(cred)
	}
	if err := e.c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.deleteAndWait(t, cred) })
	return cred
}

func (e env) deleteAndWait(t *testing.T, obj client.Object) {
	t.Helper()
	if err := e.c.Delete(bg, obj); err != nil && client.IgnoreNotFound(err) != nil {
		t.Error(err)
		return
	}
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		err := e.c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		if client.IgnoreNotFound(err) == nil && err != nil {
			return nil
		}
		return fmt.Errorf("%s still exists (err %v)", obj.GetName(), err)
	})
}
