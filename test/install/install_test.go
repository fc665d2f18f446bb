// Package install installs regcred the way a user does — its own image
// pulled from an authenticated registry, the Helm chart — on a real
// cluster, and checks what an operator would: both replicas Ready, one
// leader, the webhook reached through its Service, a Deployment from a
// private registry Running in a brand-new namespace, an upgrade without a
// single admission error, a leader crash, and an uninstall; with Helm 3
// and Helm 4, and in cert-manager mode with cert-manager running.
package install

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/fixtures"
	"regcred.dev/regcred/internal/testenv/testcluster"
	"regcred.dev/regcred/internal/testenv/testregistry"
	"regcred.dev/regcred/internal/testenv/testsuite"
)

var suite = testsuite.New()

func TestMain(m *testing.M) {
	suite.ClusterOptions(setupNode)
	os.Exit(suite.Run(m))
}

const (
	ns       = "regcred-system"
	relName  = "regcred"
	leaseKey = "regcred-manager"
	// waitLong bounds image pulls, rollouts and reconciles: seconds on a
	// quiet machine, far more under `make stress`.
	waitLong = 3 * time.Minute
)

var bg = context.Background()

type installEnv struct {
	*testcluster.Cluster
	t       *testing.T
	c       client.Client
	reg     *testregistry.Registry
	helm    string
	repo    string
	pullSet []string
	// certManagerDown say whether a cert-manager program has exited.
	certManagerDown []func() error
}

func TestInstallUpgradeFailoverUninstall(t *testing.T) {
	testenv.SkipShort(t, "installs regcred on a real cluster")
	e := setUp(t)

	// Install: both replicas Running and Ready, one leader.
	start := time.Now()
	out := e.helmRun("install", relName, chartDir(), "--namespace", ns, "--wait", "--timeout", "5m",
		"--set", "image.tag=v0.1.0", "--set", "webhook.failurePolicy=Fail")
	t.Logf("measured: helm install to both replicas Ready in %.1fs", time.Since(start).Seconds())
	// The notes tell the next step.
	if !strings.Contains(out, "kind: ClusterRegistryCredential") || !strings.Contains(out, "kubectl get clusterregistrycredentials") {
		t.Errorf("helm install's notes do not show the next step:\n%s", out)
	}
	pods := e.readyPods(t, "v0.1.0", 2)
	leader := e.leader(t, pods)
	t.Logf("leader %s", leader)
	e.waitCABundle(t)

	// The headline: a credential, a brand-new namespace, a Deployment from
	// the private registry: Running, its pull Secret injected by the
	// webhook the API server reached through the Service.
	e.credential(t)
	app := e.namespace(t, "shop")
	e.deployment(t, app, "web")
	pod := e.waitDeploymentPodRunning(t, app, "web")
	if !hasPullSecret(pod, "private-registry") || !strings.Contains(pod.Annotations["regcred.dev/injected"], "private-registry") {
		t.Errorf("pod %s/%s was not mutated by the webhook: imagePullSecrets %v, annotations %v", app, pod.Name, pod.Spec.ImagePullSecrets, pod.Annotations)
	}

	// Upgrade to a new image while Pods are admitted without pause: every
	// one gets its injection and none is refused (failurePolicy Fail makes
	// an unreachable webhook a refused Pod).
	probe := e.startAdmissionProbe(t, e.namespace(t, "rollout"))
	start = time.Now()
	e.helmRun("upgrade", relName, chartDir(), "--namespace", ns, "--wait", "--timeout", "5m",
		"--set", "image.tag=v0.2.0", "--set", "webhook.failurePolicy=Fail")
	newPods := e.readyPods(t, "v0.2.0", 2)
	e.waitOnlyPods(t, newPods)
	admitted := probe.expectClean(t, "during the upgrade")
	t.Logf("measured: helm upgrade in %.1fs; %d Pods admitted during it, none refused or uninjected unless reported", time.Since(start).Seconds(), admitted)
	newLeader := e.leader(t, newPods)
	if podOf(newLeader) == podOf(leader) {
		t.Errorf("leader %s did not hand over to a new Pod", leader)
	}

	// A leader crash: SIGKILL, no lease release. Another replica takes over
	// once the lease (8s) runs out, and syncing goes on.
	victim := e.podByName(t, podOf(newLeader))
	killed := time.Now()
	if err := e.KillContainer(victim.Status.ContainerStatuses[0].ContainerID); err != nil {
		t.Fatal(err)
	}
	var next string
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		var lease coordinationv1.Lease
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: leaseKey}, &lease); err != nil {
			return err
		}
		holder := ptr.Deref(lease.Spec.HolderIdentity, "")
		if holder == "" || holder == newLeader {
			return fmt.Errorf("lease still held by %q", holder)
		}
		next = holder
		return nil
	})
	t.Logf("measured: leader failover after SIGKILL in %.1fs (new leader %s)", time.Since(killed).Seconds(), next)
	later := e.namespace(t, "after-failover")
	e.waitSynced(t, later)

	e.nodeCredentials(t)

	// Uninstall: the webhook configuration goes; credentials, CRDs and
	// the Secrets regcred wrote stay, so running workloads keep pulling.
	e.helmRun("uninstall", relName, "--namespace", ns, "--wait", "--timeout", "5m")
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := e.c.Get(bg, client.ObjectKey{Name: relName}, &mwc); !apierrors.IsNotFound(err) {
		t.Errorf("MutatingWebhookConfiguration after uninstall: %v", err)
	}
	var list admissionregistrationv1.MutatingWebhookConfigurationList
	if err := e.c.List(bg, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("%d MutatingWebhookConfigurations left after uninstall", len(list.Items))
	}
	var synced corev1.Secret
	if err := e.c.Get(bg, client.ObjectKey{Namespace: app, Name: "private-registry"}, &synced); err != nil {
		t.Errorf("the synced Secret in %s after uninstall: %v", app, err)
	}
	var cred v1alpha1.ClusterRegistryCredential
	if err := e.c.Get(bg, client.ObjectKey{Name: "private-registry"}, &cred); err != nil {
		t.Errorf("the credential after uninstall: %v", err)
	}
	// Pods are admitted again without a webhook.
	if err := e.c.Create(bg, probePod(app, "after-uninstall"), client.DryRunAll); err != nil {
		t.Errorf("a Pod after uninstall: %v", err)
	}

	e.helm4(t)
	e.certManager(t)
}

// helm4 runs install, an upgrade under the admission probe, a second
// upgrade and uninstall with Helm 4, which applies server-side: regcred
// keeps the webhook's caBundle (a field the chart does not render), and
// every upgrade leaves it as it was.
func (e *installEnv) helm4(t *testing.T) {
	e.helm = testenv.Tool(t, "helm4")
	start := time.Now()
	e.helmRun("install", relName, chartDir(), "--namespace", ns, "--server-side=true", "--wait", "--timeout", "5m",
		"--set", "image.tag=v0.1.0", "--set", "webhook.failurePolicy=Fail")
	e.readyPods(t, "v0.1.0", 2)
	e.waitCABundle(t)
	t.Logf("measured: helm 4 install to both replicas Ready in %.1fs", time.Since(start).Seconds())
	bundle := e.caBundle(t)
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := e.c.Get(bg, client.ObjectKey{Name: relName}, &mwc); err != nil {
		t.Fatal(err)
	}
	applied := false
	for _, f := range mwc.ManagedFields {
		if f.Operation == metav1.ManagedFieldsOperationApply && strings.Contains(f.Manager, "helm") {
			applied = true
		}
	}
	if !applied {
		t.Errorf("Helm 4 did not apply the webhook configuration server-side: managed fields %+v", mwc.ManagedFields)
	}

	probe := e.startAdmissionProbe(t, e.namespace(t, "helm4-rollout"))
	e.helmRun("upgrade", relName, chartDir(), "--namespace", ns, "--server-side=true", "--wait", "--timeout", "5m",
		"--set", "image.tag=v0.2.0", "--set", "webhook.failurePolicy=Fail")
	newPods := e.readyPods(t, "v0.2.0", 2)
	e.waitOnlyPods(t, newPods)
	admitted := probe.expectClean(t, "during the Helm 4 upgrade")
	t.Logf("measured: helm 4 upgrade; %d Pods admitted during it, none refused or uninjected unless reported", admitted)
	if got := e.caBundle(t); !bytes.Equal(got, bundle) {
		t.Errorf("the Helm 4 upgrade changed the caBundle (%d bytes, was %d)", len(got), len(bundle))
	}
	// An upgrade that changes the webhook configuration itself.
	e.helmRun("upgrade", relName, chartDir(), "--namespace", ns, "--server-side=true", "--wait", "--timeout", "5m",
		"--set", "image.tag=v0.2.0", "--set", "webhook.failurePolicy=Fail", "--set", "webhook.timeoutSeconds=7")
	if err := e.c.Get(bg, client.ObjectKey{Name: relName}, &mwc); err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(mwc.Webhooks[0].TimeoutSeconds, 0); got != 7 {
		t.Errorf("timeoutSeconds %d after the upgrade, want 7", got)
	}
	if got := e.caBundle(t); !bytes.Equal(got, bundle) {
		t.Errorf("a Helm 4 upgrade of the webhook configuration changed the caBundle (%d bytes, was %d)", len(got), len(bundle))
	}
	app := e.namespace(t, "helm4-shop")
	e.deployment(t, app, "web")
	if pod := e.waitDeploymentPodRunning(t, app, "web"); !hasPullSecret(pod, "private-registry") {
		t.Errorf("pod %s/%s was not injected after the Helm 4 upgrades: %v", app, pod.Name, pod.Spec.ImagePullSecrets)
	}

	e.helmRun("uninstall", relName, "--namespace", ns, "--wait", "--timeout", "5m")
	if err := e.c.Get(bg, client.ObjectKey{Name: relName}, &mwc); !apierrors.IsNotFound(err) {
		t.Errorf("MutatingWebhookConfiguration after the Helm 4 uninstall: %v", err)
	}
}

// caBundle is the webhook configuration's caBundle.
func (e *installEnv) caBundle(t *testing.T) []byte {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := e.c.Get(bg, client.ObjectKey{Name: relName}, &mwc); err != nil {
		t.Fatal(err)
	}
	if len(mwc.Webhooks) != 1 || len(mwc.Webhooks[0].ClientConfig.CABundle) == 0 {
		t.Fatalf("no caBundle: %+v", mwc.Webhooks)
	}
	return mwc.Webhooks[0].ClientConfig.CABundle
}

func chartDir() string { return filepath.Join(testenv.RepoRoot(), "charts", "regcred") }

func setUp(t *testing.T) *installEnv {
	t.Helper()
	cl := suite.Cluster(t)
	reg := suite.Registry(t, testregistry.Token)
	if err := cl.TrustRegistry(reg); err != nil {
		t.Fatal(err)
	}
	e := &installEnv{Cluster: cl, t: t, c: cl.Client, reg: reg, helm: testenv.Tool(t, "helm3"),
		repo: reg.Ref("platform/regcred")}
	t.Cleanup(func() {
		if t.Failed() {
			e.dumpManagerLogs(t)
		}
	})
	uninstallOnFailure(t, e.helm, cl.Kubeconfig)
	// Two releases' images, built and pushed as `make image REGISTRY=...`
	// does, with the credentials of a docker config's credential helper
	// (docker-credential-*, as `docker login` with a keychain leaves it).
	helperDir := t.TempDir()
	helper := fmt.Sprintf(`#!/bin/sh
read server
case "$1" in
get) if [ "$server" = %q ]; then printf '{"ServerURL":"%%s","Username":%q,"Secret":%q}' "$server"; else echo "credentials not found in native keychain"; exit 1; fi ;;
*) exit 1 ;;
esac
`, reg.Host, reg.User.Name, reg.User.Password)
	if err := os.WriteFile(filepath.Join(helperDir, "docker-credential-regcredtest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", helperDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	dockerConfig := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(dockerConfig, []byte(fmt.Sprintf(`{"credHelpers": {%q: "regcredtest"}}`, reg.Host)), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, tag := range []string{"v0.1.0", "v0.2.0"} {
		start := time.Now()
		out := fixtures.RunReleaseTool(t, "image", "--push", reg.Ref("platform/regcred"), "--docker-config", dockerConfig, "--ca-file", reg.CAFile,
			"--platforms", "linux/"+goruntime.GOARCH, "--version", tag, "--commit", strings.Repeat(strconv.Itoa(i), 40), "--date", "1700000000")
		t.Logf("built and pushed in %.1fs: %s", time.Since(start).Seconds(), strings.TrimSpace(out))
	}
	if _, err := reg.PushTestImage(bg, "apps/web:1"); err != nil {
		t.Fatal(err)
	}
	// regcred's namespace, with the pull Secret for its own image.
	if err := e.c.Create(bg, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	e.pullSecret(t, ns, "regcred-image-pull")
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(fmt.Sprintf("image:\n  repository: %s\nimagePullSecrets:\n  - name: regcred-image-pull\nlog:\n  level: debug\n", e.repo)), 0o600); err != nil {
		t.Fatal(err)
	}
	e.pullSet = []string{"--values", values}
	return e
}

// pullSecret creates, or replaces what another test left, a pull Secret
// for the test registry.
func (e *installEnv) pullSecret(t *testing.T, namespace, name string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: e.reg.DockerConfigJSON(t)}}
	err := e.c.Create(bg, s)
	if apierrors.IsAlreadyExists(err) {
		err = e.c.Update(bg, s)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// uninstallOnFailure removes a release a failed test left, so that its
// webhook configuration (failurePolicy Fail) refuses no Pod of the next
// test.
func uninstallOnFailure(t *testing.T, helm, kubeconfig string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		out, err := exec.Command(helm, "uninstall", relName, "--namespace", ns, "--ignore-not-found", "--wait", "--timeout", "2m", "--kubeconfig", kubeconfig).CombinedOutput()
		t.Logf("cleanup: helm uninstall: %v %s", err, out)
	})
}

func (e *installEnv) helmRun(args ...string) string {
	e.t.Helper()
	if args[0] == "install" || args[0] == "upgrade" {
		args = append(args, e.pullSet...)
	}
	cmd := exec.Command(e.helm, append(args, "--kubeconfig", e.Kubeconfig)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+e.t.TempDir(), "HELM_CONFIG_HOME="+e.t.TempDir(), "HELM_DATA_HOME="+e.t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// readyPods waits until exactly n manager Pods run the image tag, all
// Ready, and returns their names.
func (e *installEnv) readyPods(t *testing.T, tag string, n int) []string {
	t.Helper()
	var names []string
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		var pods corev1.PodList
		if err := e.c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/instance": relName}); err != nil {
			return err
		}
		names = names[:0]
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil || !strings.HasSuffix(p.Spec.Containers[0].Image, ":"+tag) {
				continue
			}
			ready := false
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready = true
				}
			}
			if !ready {
				return fmt.Errorf("pod %s not Ready: %s", p.Name, e.podState(&p))
			}
			names = append(names, p.Name)
		}
		if len(names) != n {
			return fmt.Errorf("%d Ready Pods of %s, want %d", len(names), tag, n)
		}
		return nil
	})
	sort.Strings(names)
	return names
}

// waitOnlyPods waits until the release's Pods are exactly names: the old
// ones are gone.
func (e *installEnv) waitOnlyPods(t *testing.T, names []string) {
	t.Helper()
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		var pods corev1.PodList
		if err := e.c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/instance": relName}); err != nil {
			return err
		}
		var have []string
		for _, p := range pods.Items {
			have = append(have, p.Name)
		}
		sort.Strings(have)
		if strings.Join(have, ",") != strings.Join(names, ",") {
			return fmt.Errorf("pods %v, want %v", have, names)
		}
		return nil
	})
}

func (e *installEnv) podState(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s", p.Status.Phase)
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Waiting != nil {
			fmt.Fprintf(&b, ", waiting %s: %s", s.State.Waiting.Reason, s.State.Waiting.Message)
		}
		if s.State.Terminated != nil {
			fmt.Fprintf(&b, ", terminated %s (%d)", s.State.Terminated.Reason, s.State.Terminated.ExitCode)
		}
	}
	return b.String()
}

func (e *installEnv) podByName(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := e.c.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].ContainerID == "" {
		t.Fatalf("pod %s has no container: %s", name, e.podState(&p))
	}
	return &p
}

// leader waits until the lease is held by one of pods and returns the
// holder identity ("POD_UUID").
func (e *installEnv) leader(t *testing.T, pods []string) string {
	t.Helper()
	var holder string
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		var lease coordinationv1.Lease
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: leaseKey}, &lease); err != nil {
			return err
		}
		holder = ptr.Deref(lease.Spec.HolderIdentity, "")
		for _, p := range pods {
			if podOf(holder) == p {
				return nil
			}
		}
		return fmt.Errorf("lease held by %q, not one of %v", holder, pods)
	})
	return holder
}

// podOf is the Pod of a controller-runtime leader identity, POD_UUID.
func podOf(identity string) string {
	i := strings.LastIndex(identity, "_")
	if i < 0 {
		return identity
	}
	return identity[:i]
}

func (e *installEnv) waitCABundle(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		if err := e.c.Get(ctx, client.ObjectKey{Name: relName}, &mwc); err != nil {
			return err
		}
		if len(mwc.Webhooks) != 1 || len(mwc.Webhooks[0].ClientConfig.CABundle) == 0 {
			return fmt.Errorf("no caBundle yet")
		}
		if mwc.Labels["app.kubernetes.io/managed-by"] != "Helm" {
			return fmt.Errorf("configuration labels %v: not Helm's", mwc.Labels)
		}
		return nil
	})
}

func (e *installEnv) credential(t *testing.T) {
	t.Helper()
	e.pullSecret(t, ns, "private-registry-source")
	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "private-registry"}}
	cred.Spec.Registries = []string{e.reg.Host}
	cred.Spec.SecretName = "private-registry"
	cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "private-registry-source"}
	// No ServiceAccount patch: the Secret reaches Pods through the
	// webhook alone, so a Pod that has it proves the webhook answered.
	cred.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
	if err := e.c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(cred), cred); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(cred.Status.Conditions, v1alpha1.ConditionReady) {
			return fmt.Errorf("credential not Ready: %+v", cred.Status.Conditions)
		}
		return nil
	})
}

func (e *installEnv) namespace(t *testing.T, prefix string) string {
	t.Helper()
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := e.c.Create(bg, n); err != nil {
		t.Fatal(err)
	}
	return n.Name
}

// waitSynced waits until regcred wrote the credential's Secret into the
// namespace.
func (e *installEnv) waitSynced(t *testing.T, namespace string) {
	t.Helper()
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		var s corev1.Secret
		return e.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "private-registry"}, &s)
	})
}

func (e *installEnv) deployment(t *testing.T, namespace, name string) {
	t.Helper()
	e.deploymentOf(t, namespace, name, e.reg.Ref("apps/web:1"))
}

func (e *installEnv) deploymentOf(t *testing.T, namespace, name, image string) {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{{Name: "web", Image: image}},
		}},
	}}
	if err := e.c.Create(bg, d); err != nil {
		t.Fatal(err)
	}
}

func (e *installEnv) waitDeploymentPodRunning(t *testing.T, namespace, app string) *corev1.Pod {
	t.Helper()
	var running *corev1.Pod
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		var pods corev1.PodList
		if err := e.c.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{"app": app}); err != nil {
			return err
		}
		for i := range pods.Items {
			st := pods.Items[i].Status.ContainerStatuses
			if pods.Items[i].Status.Phase == corev1.PodRunning && len(st) == 1 && st[0].State.Running != nil && st[0].RestartCount == 0 {
				running = &pods.Items[i]
				return nil
			}
		}
		var events corev1.EventList
		_ = e.c.List(ctx, &events, client.InNamespace(namespace))
		var msgs []string
		for _, ev := range events.Items {
			if ev.Type == corev1.EventTypeWarning {
				msgs = append(msgs, ev.Reason+": "+ev.Message)
			}
		}
		return fmt.Errorf("no Running Pod of %s/%s; warnings: %v", namespace, app, msgs)
	})
	return running
}

func probePod(namespace, name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "will-be-replaced"}}}}
}

// admissionProbe creates Pods one after another and records every refusal
// and every Pod that came back without its pull Secret. The Pods are bound
// to a node that does not exist, so they are stored (the webhook's Secret
// check runs as for any Pod) but never run.
type admissionProbe struct {
	stopCh   chan struct{}
	done     sync.WaitGroup
	admitted atomic.Int64
	mu       sync.Mutex
	failures []string
}

func (e *installEnv) startAdmissionProbe(t *testing.T, namespace string) *admissionProbe {
	t.Helper()
	p := &admissionProbe{stopCh: make(chan struct{})}
	image := e.reg.Ref("apps/web:1")
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		for i := 0; ; i++ {
			select {
			case <-p.stopCh:
				return
			case <-time.After(50 * time.Millisecond):
			}
			pod := probePod(namespace, fmt.Sprintf("probe-%d", i))
			pod.Spec.Containers[0].Image = image
			pod.Spec.NodeName = "no-such-node"
			ctx, cancel := context.WithTimeout(bg, 30*time.Second)
			err := e.c.Create(ctx, pod)
			cancel()
			p.mu.Lock()
			switch {
			case err != nil:
				p.failures = append(p.failures, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), pod.Name, err))
			case !hasPullSecret(pod, "private-registry") || !strings.Contains(pod.Annotations["regcred.dev/injected"], "private-registry"):
				p.failures = append(p.failures, fmt.Sprintf("%s %s admitted without its pull Secret (annotations %v)", time.Now().Format("15:04:05.000"), pod.Name, pod.Annotations))
			default:
				p.admitted.Add(1)
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// expectClean stops the probe and fails the test for every refused or
// uninjected Pod, or when too few were admitted to cover what happened
// meanwhile; it returns how many were admitted.
func (p *admissionProbe) expectClean(t *testing.T, during string) int64 {
	t.Helper()
	admitted, failures := p.stop()
	if admitted < 10 {
		t.Errorf("only %d Pods were admitted %s: the probe did not cover it", admitted, during)
	}
	for _, f := range failures {
		t.Errorf("%s: %s", during, f)
	}
	return admitted
}

func (p *admissionProbe) stop() (int64, []string) {
	close(p.stopCh)
	p.done.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.admitted.Load(), p.failures
}

func hasPullSecret(pod *corev1.Pod, name string) bool {
	for _, s := range pod.Spec.ImagePullSecrets {
		if s.Name == name {
			return true
		}
	}
	return false
}

func (e *installEnv) dumpManagerLogs(t *testing.T) {
	var pods corev1.PodList
	if err := e.c.List(bg, &pods, client.InNamespace(ns)); err != nil {
		return
	}
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		t.Logf("pod %s: %s", p.Name, e.podState(&p))
		logs, err := cs.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: ptr.To[int64](40)}).DoRaw(bg)
		t.Logf("pod %s log ends (%v):\n%s", p.Name, err, logs)
	}
	t.Logf("kubelet log ends:\n%s", e.Log("kubelet", 30))
}
