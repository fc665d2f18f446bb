// Package e2e proves regcred on a real node: a kubelet on containerd pulls
// from an authenticated registry with what regcred writes, and each case
// shows the kubelet's own result (Pod Running, or its Event), never only an
// object in the API.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/cli"
	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testcluster"
	"regcred.dev/regcred/internal/testenv/testsuite"
)

var suite = testsuite.New()

func TestMain(m *testing.M) {
	// The kubelet runs this binary as regcred's credential provider
	// plugin (see nodecreds_test.go): then it is regcred's CLI.
	if filepath.Base(os.Args[0]) == nodecreds.PluginName {
		os.Exit(cli.Execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	suite.ClusterOptions(setupNodeCredentials)
	os.Exit(suite.Run(m))
}

// pullWait bounds how long a Pod may take to run or fail its pull: seconds
// on a quiet machine, far more under `make stress`.
const pullWait = 2 * time.Minute

// refusedAnonymous is how the node's containerd (2.x) reports a registry's
// 401 to a pull without credentials: it names no status code.
const refusedAnonymous = "authorization failed: no basic auth credentials"

var bg = context.Background()

// env is the cluster, with its client knowing regcred's types.
type env struct {
	*testcluster.Cluster
	c client.Client
}

func cluster(t *testing.T) env {
	t.Helper()
	testenv.SkipShort(t, "end-to-end test")
	cl := suite.Cluster(t)
	t.Cleanup(func() {
		if t.Failed() {
			var node corev1.Node
			if err := cl.Client.Get(bg, client.ObjectKey{Name: cl.NodeName}, &node); err == nil {
				t.Logf("node taints %v, conditions:", node.Spec.Taints)
				for _, c := range node.Status.Conditions {
					t.Logf("  %s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
				}
			}
			t.Logf("kubelet log ends:\n%s", cl.Log("kubelet", 30))
		}
	})
	return env{cl, cl.Client}
}

func (e env) namespace(t *testing.T, prefix string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	if err := e.c.Create(bg, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Delete(bg, ns) })
	return ns.Name
}

// podOutcome is what the kubelet made of a Pod's images: Running, or the
// waiting reason of a container (ErrImagePull, ImagePullBackOff) with the
// messages of the Pod's Warning Events.
type podOutcome struct {
	Running bool
	Reason  string
	Events  string
}

func (e env) outcome(ctx context.Context, ns, name string) (podOutcome, error) {
	var pod corev1.Pod
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pod); err != nil {
		return podOutcome{}, err
	}
	var out podOutcome
	out.Running = pod.Status.Phase == corev1.PodRunning
	for _, st := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		if st.State.Waiting != nil && st.State.Waiting.Reason != "" && st.State.Waiting.Reason != "ContainerCreating" && st.State.Waiting.Reason != "PodInitializing" {
			out.Reason = st.State.Waiting.Reason
		}
	}
	events, err := e.events(ctx, ns, name, corev1.EventTypeWarning)
	out.Events = events
	return out, err
}

// events lists "Reason: message" of the Events about a Pod, of one type
// or (typ "") all.
func (e env) events(ctx context.Context, ns, name, typ string) (string, error) {
	var events corev1.EventList
	if err := e.c.List(ctx, &events, client.InNamespace(ns)); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, ev := range events.Items {
		if ev.InvolvedObject.Name == name && (typ == "" || ev.Type == typ) {
			fmt.Fprintf(&b, "%s: %s\n", ev.Reason, ev.Message)
		}
	}
	return b.String(), nil
}

// waitRunning waits until the kubelet runs the Pod.
func (e env) waitRunning(t *testing.T, ns, name string) {
	t.Helper()
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		o, err := e.outcome(ctx, ns, name)
		if err != nil {
			return err
		}
		if !o.Running {
			return fmt.Errorf("pod %s/%s not Running (waiting: %q) events:\n%s", ns, name, o.Reason, o.Events)
		}
		return nil
	})
}

// waitPullFailure waits until the kubelet reports the Pod's pull failed,
// and returns the Warning Events, which hold the registry's answer.
func (e env) waitPullFailure(t *testing.T, ns, name string) string {
	t.Helper()
	var events string
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		o, err := e.outcome(ctx, ns, name)
		if err != nil {
			return err
		}
		if o.Running {
			return fmt.Errorf("pod %s/%s is Running, want a pull failure", ns, name)
		}
		if (o.Reason != "ErrImagePull" && o.Reason != "ImagePullBackOff") || !strings.Contains(o.Events, "Failed to pull image") {
			return fmt.Errorf("pod %s/%s waiting %q, events:\n%s", ns, name, o.Reason, o.Events)
		}
		events = o.Events
		return nil
	})
	return events
}

func pod(ns, name, image string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: new(int64),
		Containers:                    []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: corev1.PullAlways}},
	}}
}
