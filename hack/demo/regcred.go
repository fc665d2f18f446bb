package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/doctor"
	"regcred.dev/regcred/internal/manager/inprocess"
	"regcred.dev/regcred/internal/testenv/testcluster"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

const regcredNamespace = "regcred-system"

// startManager runs the regcred manager in this process, as `regcred
// manager` would.
func startManager(ctx context.Context, cl *testcluster.Cluster, certDir string) error {
	_, err := inprocess.Start(ctx, cl.Config, inprocess.Options{Namespace: regcredNamespace, CertDir: certDir, MetricsAddr: "127.0.0.1:0"})
	return err
}

// tellStory runs the scenario a user lives through and returns it told in
// a few lines: a Deployment that cannot pull, the one object that fixes
// it, the Pod Running.
func tellStory(ctx context.Context, cl *testcluster.Cluster, reg *testregistry.Registry) (string, error) {
	c := cl.Client
	var story strings.Builder
	image := reg.Ref("shop/web:1.0")

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		return "", err
	}
	deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{Name: "web", Image: image}}},
		},
	}}
	if err := c.Create(ctx, deploy); err != nil {
		return "", err
	}
	stuck, event, err := waitPod(ctx, c, "shop", func(p *corev1.Pod, events []corev1.Event) (bool, string) {
		for _, st := range p.Status.ContainerStatuses {
			if st.State.Waiting != nil && (st.State.Waiting.Reason == "ImagePullBackOff" || st.State.Waiting.Reason == "ErrImagePull") {
				for _, e := range events {
					if e.Reason == "Failed" && strings.Contains(e.Message, "Failed to pull image") {
						return true, st.State.Waiting.Reason + ": " + e.Message
					}
				}
			}
		}
		return false, ""
	})
	if err != nil {
		return "", fmt.Errorf("waiting for the Pod without a credential to fail its pull: %w", err)
	}
	fmt.Fprintf(&story, "1. Without regcred, deployment/web in namespace shop cannot pull %s:\n", image)
	fmt.Fprintf(&story, "   pod/%s  %s\n\n", stuck.Name, condense(event))

	// The one object: a credential for the registry, from a Secret in
	// regcred's namespace (written here by the demo; by a person, a CI
	// job or External Secrets in real life).
	data, err := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{reg.Host: {Username: reg.User.Name, Password: reg.User.Password}}}).MarshalDockerConfigJSON()
	if err != nil {
		return "", err
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNamespace, Name: "private-registry-robot"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}); err != nil {
		return "", err
	}
	// Creation times have a resolution of one second, and the kubelet
	// can fail a loopback pull within the Pod's first second: the
	// credential is made in a later second than the Pod, as it is when a
	// person writes it, so the doctor can tell which came first.
	if d := time.Until(stuck.CreationTimestamp.Add(time.Second)); d > 0 {
		time.Sleep(d)
	}
	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "private-registry"}}
	cred.Spec.Registries = []string{reg.Host}
	cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "private-registry-robot"}
	if err := c.Create(ctx, cred); err != nil {
		return "", err
	}
	mirror := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "dockerhub"}}
	mirror.Spec.Mirrors = []v1alpha1.MirrorRule{{Source: "docker.io", Mirror: reg.Host + "/dockerhub"}}
	if err := c.Create(ctx, mirror); err != nil {
		return "", err
	}
	fmt.Fprintf(&story, `2. The one object that fixes it:
   apiVersion: regcred.dev/v1alpha1
   kind: ClusterRegistryCredential
   metadata: {name: private-registry}
   spec:
     registries: [%s]
     source: {secretRef: {name: private-registry-robot}}   # in %s

`, reg.Host, regcredNamespace)

	// The doctor explains the stuck Pod once the Secret is in place.
	finding, err := diagnose(ctx, c)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&story, "   regcred doctor -n shop:\n   %s (%s): %s\n   fix: %s\n\n", finding.Cause, finding.Diagnosis, finding.Explanation, finding.Fix)

	// The kubelet never re-reads a Pod's pull Secrets: the stuck Pod is
	// replaced, and its successor gets the Secret.
	start := time.Now()
	if err := c.Delete(ctx, stuck); err != nil {
		return "", err
	}
	running, _, err := waitPod(ctx, c, "shop", func(p *corev1.Pod, _ []corev1.Event) (bool, string) {
		return p.Name != stuck.Name && p.Status.Phase == corev1.PodRunning, ""
	})
	if err != nil {
		return "", fmt.Errorf("waiting for the Pod with the credential to run: %w", err)
	}
	var secrets []string
	for _, r := range running.Spec.ImagePullSecrets {
		secrets = append(secrets, r.Name)
	}
	fmt.Fprintf(&story, "3. The stuck Pod replaced (a kubelet never re-reads a Pod's pull Secrets):\n")
	fmt.Fprintf(&story, "   pod/%s  Running %s later, imagePullSecrets %v\n", running.Name, time.Since(start).Round(100*time.Millisecond), secrets)
	return story.String(), nil
}

// diagnose waits until the credential's Secret is in namespace shop and
// returns what `regcred doctor -n shop` says of the stuck Pod.
func diagnose(ctx context.Context, c client.Client) (*doctor.Finding, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "regcred-private-registry"}, &corev1.Secret{})
		if err == nil {
			snap, err := doctor.Collect(ctx, c, doctor.Target{Namespace: "shop"}, regcredNamespace)
			if err != nil {
				return nil, err
			}
			if r := doctor.Diagnose(snap, "namespace shop"); len(r.Findings) > 0 {
				return &r.Findings[0], nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the doctor's finding: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitPod waits until a Pod of namespace ns, with its Events, satisfies
// match, and returns it with what match said.
func waitPod(ctx context.Context, c client.Client, ns string, match func(*corev1.Pod, []corev1.Event) (bool, string)) (*corev1.Pod, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		var pods corev1.PodList
		var events corev1.EventList
		if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return nil, "", err
		}
		if err := c.List(ctx, &events, client.InNamespace(ns)); err != nil {
			return nil, "", err
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			var mine []corev1.Event
			for _, e := range events.Items {
				if e.InvolvedObject.Name == p.Name {
					mine = append(mine, e)
				}
			}
			if ok, what := match(p, mine); ok {
				return p, what, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// condense keeps the ends of a kubelet message, where the image and the
// registry's answer are: `Failed to pull image "X": ...: authorization
// failed: no basic auth credentials` (containerd 2's words for a 401 to a
// pull without credentials).
func condense(msg string) string {
	parts := strings.Split(msg, ": ")
	if len(parts) <= 4 {
		return msg
	}
	return strings.Join(parts[:2], ": ") + ": ...: " + strings.Join(parts[len(parts)-2:], ": ")
}
