package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/manager"
	"regcred.dev/regcred/internal/testenv"
)

const regcredNamespace = "regcred-system"

// startManager runs the regcred manager in this process, as `regcred
// manager` would, logging to logFile.
func startManager(ctx context.Context, cp *testenv.ControlPlane, logFile, certDir string) error {
	f, err := os.Create(logFile)
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(f)))
	c := cp.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: regcredNamespace}}); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	mgr, err := manager.New(ctx, manager.Options{
		RestConfig: cp.Config, Namespace: regcredNamespace, MetricsAddr: "127.0.0.1:0", ProbeAddr: "0",
		// The local control plane reaches the webhook by URL on loopback.
		Webhook: &manager.WebhookOptions{Host: "127.0.0.1", Port: port, CertDir: certDir, ManageCertificates: true, Register: true},
	})
	if err != nil {
		return err
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "manager: %v\n", err)
		}
	}()
	deadline := time.Now().Add(time.Minute)
	for mgr.GetWebhookServer().StartedChecker()(nil) != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("the webhook server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// applySample creates two team namespaces (with the default ServiceAccount
// the test control plane does not create by itself), the source Secret and
// a ClusterRegistryCredential, and waits until it is Ready.
func applySample(ctx context.Context, cp *testenv.ControlPlane, reg *testenv.Registry) error {
	scheme, err := manager.Scheme()
	if err != nil {
		return err
	}
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	for _, ns := range []string{"team-a", "team-b"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
		if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}); err != nil {
			return err
		}
	}
	data, err := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{reg.Host: {Username: reg.User.Name, Password: reg.User.Password}}}).MarshalDockerConfigJSON()
	if err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: regcredNamespace, Name: "demo-registry-robot"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
	}); err != nil {
		return err
	}
	// Air-gap style: Docker Hub images come from the local registry.
	mirror := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "dockerhub-via-local"}}
	mirror.Spec.Mirrors = []v1alpha1.MirrorRule{{Source: "docker.io", Mirror: reg.Host + "/dockerhub"}}
	if err := c.Create(ctx, mirror); err != nil {
		return err
	}
	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "demo-registry"}}
	cred.Spec.Registries = []string{reg.Host}
	cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "demo-registry-robot"}
	if err := c.Create(ctx, cred); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(cred), cred); err != nil {
			return err
		}
		if meta.IsStatusConditionTrue(cred.Status.Conditions, v1alpha1.ConditionReady) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the sample ClusterRegistryCredential did not become Ready: %+v", cred.Status)
}

// firstPod creates a brand-new namespace and, right away, a Pod in it, and
// returns the Pod as the API server stored it.
func firstPod(ctx context.Context, cp *testenv.ControlPlane) (*corev1.Pod, error) {
	c := cp.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		return nil, err
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}
	if err := c.Create(ctx, pod); err != nil {
		return nil, err
	}
	return pod, nil
}
