package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// registry is the package's registry in mode, trusted by the node, holding
// the test image as app:1.
func (e env) registry(t *testing.T, mode testregistry.AuthMode) *testregistry.Registry {
	t.Helper()
	reg := suite.Registry(t, mode)
	if err := e.TrustRegistry(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PushTestImage(bg, "app:1"); err != nil {
		t.Fatal(err)
	}
	return reg
}

// ownRegistry is a registry of the test's own (one it may change: rotate
// a password, issue short-lived logins), trusted by the node, holding the
// test image as app:1.
func (e env) ownRegistry(t *testing.T, mode testregistry.AuthMode) *testregistry.Registry {
	t.Helper()
	reg, err := testregistry.Start(mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	if err := e.TrustRegistry(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PushTestImage(bg, "app:1"); err != nil {
		t.Fatal(err)
	}
	return reg
}

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func podTemplate(app, image string, restart corev1.RestartPolicy) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels("app", app)},
		Spec: corev1.PodSpec{
			RestartPolicy:                 restart,
			TerminationGracePeriodSeconds: new(int64),
			Containers:                    []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: corev1.PullAlways}},
		},
	}
}

// waitPodOf waits until a Pod with label app=app in ns is Running.
func (e env) waitPodOf(t *testing.T, ns, app string) {
	t.Helper()
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		var pods corev1.PodList
		if err := e.c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil {
			return err
		}
		if len(pods.Items) == 0 {
			return fmt.Errorf("no Pod of %s/%s yet", ns, app)
		}
		var why []string
		for _, p := range pods.Items {
			o, err := e.outcome(ctx, ns, p.Name)
			if err != nil {
				return err
			}
			if o.Running {
				return nil
			}
			why = append(why, fmt.Sprintf("%s waiting %q %s", p.Name, o.Reason, o.Events))
		}
		return fmt.Errorf("no Pod of %s/%s Running: %s", ns, app, strings.Join(why, "; "))
	})
}

// TestBrandNewNamespaceWorkloads: with a ClusterRegistryCredential in
// place, a namespace is created and at once a Deployment, a Job and a Job
// made from a CronJob in it. Their first Pods race the default
// ServiceAccount (the controller-manager makes it) and the synced Secret;
// all run.
func TestBrandNewNamespaceWorkloads(t *testing.T) {
	e := withRegcred(t)
	reg := e.registry(t, testregistry.Basic)
	e.sourceSecret(t, regcredNS, "fanout-robot", reg)
	e.clusterCredential(t, "fanout", "fanout-robot", labels("e2e", "fanout"), []string{reg.Host}, nil)

	ns := e.namespace(t, "fanout", labels("e2e", "fanout"))
	image := reg.Ref("app:1")
	deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels("app", "web")},
		Template: podTemplate("web", image, corev1.RestartPolicyAlways)}}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "migrate"}, Spec: batchv1.JobSpec{
		Template: podTemplate("migrate", image, corev1.RestartPolicyNever)}}
	cron := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "report"}, Spec: batchv1.CronJobSpec{
		Schedule: "0 0 1 1 *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: podTemplate("report", image, corev1.RestartPolicyOnFailure)}}}}
	for _, o := range []client.Object{deploy, job, cron} {
		if err := e.c.Create(bg, o); err != nil {
			t.Fatal(err)
		}
	}
	e.jobFromCronJob(t, cron, "report-now")
	for _, app := range []string{"web", "migrate", "report"} {
		e.waitPodOf(t, ns, app)
	}
}

// jobFromCronJob does what `kubectl create job --from=cronjob/NAME` does: a
// Job from the CronJob's template, owned by it, so a test need not wait
// for the schedule.
func (e env) jobFromCronJob(t *testing.T, cron *batchv1.CronJob, name string) {
	t.Helper()
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: cron.Namespace, Name: name,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: cron.Name, UID: cron.UID}}},
		Spec: cron.Spec.JobTemplate.Spec}
	if err := e.c.Create(bg, job); err != nil {
		t.Fatal(err)
	}
}

// TestInjectionOnly: with ServiceAccounts mode None only the webhook puts
// the Secret in Pods, and they run; with podInjection disabled as well,
// nothing does, and the kubelet's pull fails.
func TestInjectionOnly(t *testing.T) {
	e := withRegcred(t)
	reg := e.registry(t, testregistry.Basic)
	e.sourceSecret(t, regcredNS, "inject-robot", reg)
	e.clusterCredential(t, "inject-only", "inject-robot", labels("e2e", "inject-only"), []string{reg.Host}, func(c *v1alpha1.ClusterRegistryCredential) {
		c.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
	})
	e.clusterCredential(t, "inject-off", "inject-robot", labels("e2e", "inject-off"), []string{reg.Host}, func(c *v1alpha1.ClusterRegistryCredential) {
		c.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
		c.Spec.PodInjection.Enabled = ptr.To(false)
	})

	on := e.namespace(t, "inject-only", labels("e2e", "inject-only"))
	if err := e.c.Create(bg, pod(on, "app", reg.Ref("app:1"))); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, on, "app")
	var p corev1.Pod
	if err := e.c.Get(bg, client.ObjectKey{Namespace: on, Name: "app"}, &p); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(secretNames(p.Spec.ImagePullSecrets), []string{"regcred-inject-only"}) {
		t.Errorf("imagePullSecrets %v, want the injected one only", p.Spec.ImagePullSecrets)
	}

	off := e.namespace(t, "inject-off", labels("e2e", "inject-off"))
	if err := e.c.Create(bg, pod(off, "app", reg.Ref("app:1"))); err != nil {
		t.Fatal(err)
	}
	if events := e.waitPullFailure(t, off, "app"); !strings.Contains(events, refusedAnonymous) {
		t.Errorf("events do not show the registry's refusal of a pull without credentials:\n%s", events)
	}
}

func secretNames(refs []corev1.LocalObjectReference) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Name)
	}
	return out
}

// TestMirror: a Pod asks for docker.io/library/IMAGE; the webhook rewrites
// it to the mirror registry and adds the mirror's credential, and the
// kubelet runs it from there (docker.io is never reached).
func TestMirror(t *testing.T) {
	e := withRegcred(t)
	mirrorReg := e.registry(t, testregistry.Token)
	if _, err := mirrorReg.PushTestImage(bg, "dockerhub/library/regcred-e2e:1"); err != nil {
		t.Fatal(err)
	}
	e.sourceSecret(t, regcredNS, "mirror-robot", mirrorReg)
	e.clusterCredential(t, "mirror", "mirror-robot", labels("e2e", "mirror"), []string{mirrorReg.Host}, nil)
	m := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "e2e-dockerhub"}}
	m.Spec.Mirrors = []v1alpha1.MirrorRule{{Source: "docker.io", Mirror: mirrorReg.Host + "/dockerhub"}}
	if err := e.c.Create(bg, m); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.deleteAndWait(t, m) })

	ns := e.namespace(t, "mirror", labels("e2e", "mirror"))
	// The webhook may not have seen the new mirror yet: retry with fresh
	// Pods until one comes back rewritten.
	var name string
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		p := pod(ns, "", "docker.io/library/regcred-e2e:1")
		p.GenerateName = "app-"
		if err := e.c.Create(ctx, p); err != nil {
			return err
		}
		if want := mirrorReg.Ref("dockerhub/library/regcred-e2e:1"); p.Spec.Containers[0].Image != want {
			return fmt.Errorf("image %s, want %s", p.Spec.Containers[0].Image, want)
		}
		name = p.Name
		return nil
	})
	e.waitRunning(t, ns, name)
}

// TestTenantCredential: a RegistryCredential serves its own namespace's
// Pods and no other's.
func TestTenantCredential(t *testing.T) {
	e := withRegcred(t)
	reg := e.registry(t, testregistry.Token)
	tenant := e.namespace(t, "tenant", nil)
	neighbour := e.namespace(t, "neighbour", nil)
	e.sourceSecret(t, tenant, "robot", reg)
	rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "team"}}
	rc.Spec.Registries = []string{reg.Host}
	rc.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "robot"}
	if err := e.c.Create(bg, rc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.deleteAndWait(t, rc) })

	if err := e.c.Create(bg, pod(tenant, "app", reg.Ref("app:1"))); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, tenant, "app")
	if err := e.c.Create(bg, pod(neighbour, "app", reg.Ref("app:1"))); err != nil {
		t.Fatal(err)
	}
	// A token registry grants an anonymous client no scope.
	if events := e.waitPullFailure(t, neighbour, "app"); !strings.Contains(events, "insufficient_scope") {
		t.Errorf("events do not show the refusal:\n%s", events)
	}
}
