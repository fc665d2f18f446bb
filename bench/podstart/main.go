// Command podstart measures, on a real cluster on this machine (a kubelet
// node on containerd, see internal/testenv), what a user waits for: from
// nothing to a Ready node, and from creating a namespace and a Deployment
// of a private image at once to its Pod Running, with regcred providing
// the credential. Run as root: go run ./bench/podstart [-n 30]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/bench/internal/stats"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/manager/inprocess"
	"regcred.dev/regcred/internal/testenv/testcluster"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "podstart: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("n", 30, "namespaces, one Deployment each, created one after another")
	flag.Parse()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	start := time.Now()
	cl, err := testcluster.Start()
	if err != nil {
		return err
	}
	defer func() { _ = cl.Stop() }()
	fmt.Printf("cluster: nothing to node Ready %s, to the default ServiceAccount %s\n",
		cl.NodeReady.Round(10*time.Millisecond), time.Since(start).Round(10*time.Millisecond))

	reg, err := testregistry.Start(testregistry.Basic)
	if err != nil {
		return err
	}
	defer reg.Close()
	if err := cl.TrustRegistry(reg); err != nil {
		return err
	}
	if _, err := reg.PushTestImage(ctx, "app:1"); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	certDir, err := os.MkdirTemp("", "podstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(certDir)
	if _, err := inprocess.Start(ctx, cl.Config, inprocess.Options{Namespace: "regcred-system", CertDir: certDir}); err != nil {
		return err
	}
	c := cl.Client
	data, err := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{reg.Host: {Username: reg.User.Name, Password: reg.User.Password}}}).MarshalDockerConfigJSON()
	if err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "regcred-system", Name: "robot"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}); err != nil {
		return err
	}
	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "private"}}
	cred.Spec.Registries = []string{reg.Host}
	cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "robot"}
	if err := c.Create(ctx, cred); err != nil {
		return err
	}

	var durations []time.Duration
	for i := range *n {
		ns := fmt.Sprintf("podstart-%d", i)
		began := time.Now()
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
		deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64),
					Containers: []corev1.Container{{Name: "web", Image: reg.Ref("app:1"), ImagePullPolicy: corev1.PullAlways}}}}}}
		if err := c.Create(ctx, deploy); err != nil {
			return err
		}
		if err := waitRunning(ctx, c, ns); err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
		durations = append(durations, time.Since(began))
	}
	ms := time.Millisecond
	fmt.Printf("namespace + Deployment created -> Pod Running (%d runs, image pulled each time): p50 %s, p90 %s, p99 %s, max %s\n",
		len(durations), stats.Percentile(durations, 50, ms), stats.Percentile(durations, 90, ms), stats.Percentile(durations, 99, ms), stats.Percentile(durations, 100, ms))
	return nil
}

func waitRunning(ctx context.Context, c client.Client, ns string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no Pod Running: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
