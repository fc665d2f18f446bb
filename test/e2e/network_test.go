package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// The harness's network, which installing regcred as Pods needs: a Pod
// reaches the API server through the kubernetes Service (and trusts its
// certificate), and the API server reaches a Service's Pods, as it does a
// webhook Service.

func TestPodReachesAPIServerThroughService(t *testing.T) {
	e := cluster(t)
	reg := e.registry(t, testregistry.Basic)
	ns := e.namespace(t, "net-api", nil)
	e.sourceSecret(t, ns, "pull", reg)
	p := pod(ns, "probe", reg.Ref("app:1"))
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "pull"}}
	p.Spec.Containers[0].Args = []string{"apiserver"}
	if err := e.c.Create(bg, p); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		var got corev1.Pod
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
			return err
		}
		switch got.Status.Phase {
		case corev1.PodSucceeded:
			return nil
		case corev1.PodFailed:
			t.Fatalf("the Pod could not reach the API server through the kubernetes Service:\n%s", e.podLog(t, ns, "probe"))
		}
		return fmt.Errorf("probe Pod %s", got.Status.Phase)
	})
	if log := e.podLog(t, ns, "probe"); !strings.Contains(log, "200 OK") || !strings.Contains(log, fmt.Sprintf(`"gitVersion": %q`, testenv.KubeVersion())) {
		t.Errorf("probe output:\n%s", log)
	}
}

func TestAPIServerReachesServicePods(t *testing.T) {
	e := cluster(t)
	reg := e.registry(t, testregistry.Basic)
	ns := e.namespace(t, "net-svc", nil)
	e.sourceSecret(t, ns, "pull", reg)
	p := pod(ns, "web", reg.Ref("app:1"))
	p.Labels = labels("app", "web")
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "pull"}}
	p.Spec.Containers[0].Args = []string{"serve", ":8080"}
	if err := e.c.Create(bg, p); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: labels("app", "web"), Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	if err := e.c.Create(bg, svc); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, ns, "web")
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	// The API server's Service proxy resolves the Service to its Pod, as
	// it does for a webhook Service with --enable-aggregator-routing.
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		body, err := cs.CoreV1().Services(ns).ProxyGet("http", "web", "80", "/", nil).DoRaw(ctx)
		if err != nil {
			return err
		}
		if string(body) != "testimage" {
			return fmt.Errorf("the Service answered %q", body)
		}
		return nil
	})
}

func (e env) podLog(t *testing.T, ns, name string) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cs.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(bg)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}
