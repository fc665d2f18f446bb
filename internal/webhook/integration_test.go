package webhook_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/manager/inprocess"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/controlplane"
	"regcred.dev/regcred/internal/testenv/testsuite"
	"regcred.dev/regcred/internal/webhook"
)

const regcredNS = "regcred-system"

var (
	suite    = testsuite.New(controlplane.WithSchemeAdder(v1alpha1.AddToScheme), controlplane.WithServiceAccountAdmission())
	once     sync.Once
	setupErr error
)

func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }

// env starts, once per package, a manager whose webhook the real API server
// calls over HTTPS on loopback, with two credentials and a mirror rule.
func env(t *testing.T) client.Client {
	t.Helper()
	testenv.SkipShort(t, "integration test")
	cp := suite.ControlPlane(t)
	c := cp.Client
	once.Do(func() { setupErr = setup(cp) })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	return c
}

func setup(cp *controlplane.ControlPlane) error {
	ctx, cancel := context.WithCancel(context.Background())
	c := cp.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: regcredNS}}); err != nil {
		cancel()
		return err
	}
	for _, src := range []struct{ name, host string }{{"harbor-robot", "harbor.internal"}, {"ghcr-bot", "ghcr.io"}} {
		data, _ := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{src.host: {Username: "u", Password: "p"}}}).MarshalDockerConfigJSON()
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNS, Name: src.name},
			Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}); err != nil {
			cancel()
			return err
		}
	}
	for _, cr := range []struct{ name, source, registry string }{{"harbor", "harbor-robot", "harbor.internal"}, {"ghcr", "ghcr-bot", "ghcr.io"}} {
		cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: cr.name}}
		cred.Spec.Registries = []string{cr.registry}
		cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: cr.source}
		// Injection only: the ServiceAccount patch would put every Secret
		// in every Pod through the ServiceAccount admission plugin.
		cred.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
		cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "backstop", Operator: metav1.LabelSelectorOpDoesNotExist}}}
		if err := c.Create(ctx, cred); err != nil {
			cancel()
			return err
		}
	}
	mirror := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "airgap"}}
	mirror.Spec.Mirrors = []v1alpha1.MirrorRule{{Source: "docker.io", Mirror: "harbor.internal/dockerhub"}}
	if err := c.Create(ctx, mirror); err != nil {
		cancel()
		return err
	}

	certDir, err := os.MkdirTemp("", "regcred-webhook-test-")
	if err != nil {
		cancel()
		return err
	}
	// Shutdown logs informer errors as the control plane goes away; the
	// tests assert on behaviour, not on logs.
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	// Fail, not the default Ignore: a Pod that the webhook did not answer
	// is rejected, so a case expecting no change cannot pass because the
	// webhook was never called.
	done, err := inprocess.Start(ctx, cp.Config, inprocess.Options{Namespace: regcredNS, CertDir: certDir,
		FailurePolicy: string(admissionregistrationv1.Fail)})
	suite.OnStop(func() {
		cancel()
		if done != nil {
			<-done
		}
		_ = os.RemoveAll(certDir)
	})
	return err
}

func namespace(t *testing.T, c client.Client, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "wh-", Labels: labels}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	// The ServiceAccount admission plugin needs the Pod's ServiceAccount.
	if err := c.Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}}); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func createPod(t *testing.T, c client.Client, ns string, mutate func(*corev1.Pod), images ...string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "p-", Namespace: ns}}
	for i, img := range images {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c" + strconv.Itoa(i), Image: img})
	}
	if mutate != nil {
		mutate(p)
	}
	if err := c.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func secrets(p *corev1.Pod) []string {
	var out []string
	for _, r := range p.Spec.ImagePullSecrets {
		out = append(out, r.Name)
	}
	return out
}

func TestInjectionMatchesImages(t *testing.T) {
	c := env(t)
	ns := namespace(t, c, nil)
	for _, tc := range []struct {
		name   string
		images []string
		init   []string
		want   []string
	}{
		{"one registry", []string{"harbor.internal/team/app:1"}, nil, []string{"regcred-harbor"}},
		{"two registries", []string{"harbor.internal/team/app:1", "ghcr.io/acme/api:2"}, nil, []string{"regcred-ghcr", "regcred-harbor"}},
		{"init container counts", []string{"registry.example.com/app:1"}, []string{"ghcr.io/acme/migrate:1"}, []string{"regcred-ghcr"}},
		{"no match", []string{"registry.example.com/app:1"}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := createPod(t, c, ns, func(p *corev1.Pod) {
				for i, img := range tc.init {
					p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "init" + strconv.Itoa(i), Image: img})
				}
			}, tc.images...)
			got := secrets(p)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("imagePullSecrets %v, want %v", got, tc.want)
			}
			if len(tc.want) > 0 && p.Annotations[webhook.AnnotationInjected] == "" {
				t.Errorf("no %s annotation: %v", webhook.AnnotationInjected, p.Annotations)
			}
		})
	}
}

func TestMirrorRewriteThenMirrorCredential(t *testing.T) {
	c := env(t)
	ns := namespace(t, c, nil)
	p := createPod(t, c, ns, nil, "nginx:1.27", "docker.io/grafana/grafana@sha256:"+strings.Repeat("c", 64))
	if p.Spec.Containers[0].Image != "harbor.internal/dockerhub/library/nginx:1.27" ||
		p.Spec.Containers[1].Image != "harbor.internal/dockerhub/grafana/grafana@sha256:"+strings.Repeat("c", 64) {
		t.Errorf("images %s, %s", p.Spec.Containers[0].Image, p.Spec.Containers[1].Image)
	}
	if got := secrets(p); !slices.Equal(got, []string{"regcred-harbor"}) {
		t.Errorf("imagePullSecrets %v, want the mirror's credential", got)
	}
	if !strings.Contains(p.Annotations[webhook.AnnotationRewritten], `"c0":"nginx:1.27"`) {
		t.Errorf("rewritten annotation %q", p.Annotations[webhook.AnnotationRewritten])
	}
}

// TestImageVolumes: an image volume is rewritten by the mirror rules and
// brings its registry's pull Secret, like a container image.
func TestImageVolumes(t *testing.T) {
	c := env(t)
	ns := namespace(t, c, nil)
	p := createPod(t, c, ns, func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{
			{Name: "model", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "ghcr.io/acme/model:1", PullPolicy: corev1.PullIfNotPresent}}},
			{Name: "tools", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "busybox:1.36", PullPolicy: corev1.PullIfNotPresent}}},
		}
	}, "registry.example.com/app:1")
	if got := p.Spec.Volumes[1].Image.Reference; got != "harbor.internal/dockerhub/library/busybox:1.36" {
		t.Errorf("image volume reference %q, want the mirror's", got)
	}
	got := secrets(p)
	slices.Sort(got)
	if !slices.Equal(got, []string{"regcred-ghcr", "regcred-harbor"}) {
		t.Errorf("imagePullSecrets %v, want [regcred-ghcr regcred-harbor]", got)
	}
	if !strings.Contains(p.Annotations[webhook.AnnotationRewritten], `"volume/tools":"busybox:1.36"`) {
		t.Errorf("rewritten annotation %q", p.Annotations[webhook.AnnotationRewritten])
	}
}

// TestFirstPodInNewNamespace: the Secret exists the moment the Pod is
// admitted, without waiting for the controller.
func TestFirstPodInNewNamespace(t *testing.T) {
	c := env(t)
	for i := range 5 {
		ns := namespace(t, c, nil)
		p := createPod(t, c, ns, nil, "harbor.internal/team/app:1")
		if got := secrets(p); !slices.Equal(got, []string{"regcred-harbor"}) {
			t.Fatalf("round %d: imagePullSecrets %v", i, got)
		}
		var s corev1.Secret
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "regcred-harbor"}, &s); err != nil {
			t.Fatalf("round %d: the Pod was admitted before its Secret existed: %v", i, err)
		}
		if s.Type != corev1.SecretTypeDockerConfigJson || s.Labels[credential.LabelManaged] != "true" {
			t.Errorf("round %d: Secret %+v", i, s.ObjectMeta)
		}
	}
}

// TestDryRunCreatesNothing: on a dry run the webhook answers as it would
// but writes nothing. A ResourceQuota forbids Secrets in the namespace, so
// every write fails, and a Secret the webhook cannot write is dropped from
// its answer: a dry-run Pod comes back with the Secret (no write was
// tried), a real Pod without it (the write was tried and failed).
func TestDryRunCreatesNothing(t *testing.T) {
	c := env(t)
	ctx := context.Background()
	// Out of the suite credentials' reach, so nothing writes a Secret here
	// before the quota is in place.
	ns := namespace(t, c, map[string]string{"backstop": "quota"})
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-secrets"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/secrets": resource.MustParse("0")}}}
	if err := c.Create(ctx, quota); err != nil {
		t.Fatal(err)
	}
	// No kube-controller-manager computes the usage here: write it, so the
	// quota is enforced as "0 of 0" rather than as "status unknown".
	quota.Status = corev1.ResourceQuotaStatus{Hard: quota.Spec.Hard, Used: corev1.ResourceList{"count/secrets": resource.MustParse("0")}}
	if err := c.Status().Update(ctx, quota); err != nil {
		t.Fatal(err)
	}
	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "dry"}}
	cred.Spec.Registries = []string{"dry.example.com"}
	cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "harbor-robot"}
	cred.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
	cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"backstop": "quota"}}
	if err := c.Create(ctx, cred); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Delete(ctx, cred) }()

	dryPod := func() *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "dry", Namespace: ns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "dry.example.com/app:1"}}}}
	}
	// Until the webhook has seen the new credential it adds nothing; once
	// it has, a dry run must carry the Secret.
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		p := dryPod()
		if err := c.Create(ctx, p, client.DryRunAll); err != nil {
			return err
		}
		if got := secrets(p); !slices.Equal(got, []string{"regcred-dry"}) {
			return fmt.Errorf("dry-run answer imagePullSecrets %v, want [regcred-dry]", got)
		}
		return nil
	})
	var stored corev1.Pod
	if err := c.Get(ctx, client.ObjectKeyFromObject(dryPod()), &stored); !apierrors.IsNotFound(err) {
		t.Errorf("dry-run stored a Pod: %v", err)
	}
	real := createPod(t, c, ns, nil, "dry.example.com/app:1")
	if got := secrets(real); len(got) != 0 {
		t.Errorf("a Secret that cannot be written was added to a real Pod: %v", got)
	}
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "regcred-dry"}, &s); !apierrors.IsNotFound(err) {
		t.Errorf("Secret regcred-dry in a namespace that allows none: %v", err)
	}
}

func TestAlreadyListedIsUnchanged(t *testing.T) {
	c := env(t)
	ns := namespace(t, c, nil)
	p := createPod(t, c, ns, func(p *corev1.Pod) {
		p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "mine"}, {Name: "regcred-harbor"}}
	}, "harbor.internal/team/app:1")
	if got := secrets(p); !slices.Equal(got, []string{"mine", "regcred-harbor"}) {
		t.Errorf("imagePullSecrets %v", got)
	}
	if _, ok := p.Annotations[webhook.AnnotationInjected]; ok {
		t.Errorf("a Pod needing nothing was annotated: %v", p.Annotations)
	}
	opted := createPod(t, c, ns, func(p *corev1.Pod) { p.Labels = map[string]string{webhook.LabelInject: "false"} }, "harbor.internal/team/app:1")
	if len(opted.Spec.ImagePullSecrets) != 0 {
		t.Errorf("opted-out Pod mutated: %v", opted.Spec.ImagePullSecrets)
	}
}

// TestWebhookDownIgnoredAndBackstop: with the webhook unreachable, Pods are
// admitted (failurePolicy Ignore) and get the ServiceAccount's Secrets from
// the ServiceAccount admission plugin, which regcred's patch feeds.
func TestWebhookDownIgnoredAndBackstop(t *testing.T) {
	c := env(t)
	ctx := context.Background()
	// regcred's real webhook skips this namespace (opt-out label); a copy of
	// its configuration pointing at a dead port selects it.
	ns := namespace(t, c, map[string]string{"backstop": "yes", webhook.LabelInject: "false"})
	dead := "https://127.0.0.1:1" + webhook.Path
	cfg := webhook.Config{Namespace: regcredNS, ConfigurationName: "regcred-dead", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &dead}}
	mwc := cfg.Configuration(nil)
	if *mwc.Webhooks[0].FailurePolicy != admissionregistrationv1.Ignore {
		t.Fatalf("default failurePolicy %s, want Ignore", *mwc.Webhooks[0].FailurePolicy)
	}
	mwc.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"backstop": "yes"}}
	mwc.Webhooks[0].ObjectSelector = nil
	if err := c.Create(ctx, mwc); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Delete(ctx, mwc) }()

	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "backstop"}}
	cred.Spec.Registries = []string{"harbor.internal"}
	cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "harbor-robot"}
	cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"backstop": "yes"}}
	if err := c.Create(ctx, cred); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Delete(ctx, cred) }()
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		var sa corev1.ServiceAccount
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &sa); err != nil {
			return err
		}
		if len(sa.ImagePullSecrets) == 0 {
			return fmt.Errorf("ServiceAccount not patched yet")
		}
		return nil
	})
	p := createPod(t, c, ns, nil, "harbor.internal/team/app:1")
	if got := secrets(p); !slices.Equal(got, []string{"regcred-backstop"}) {
		t.Errorf("imagePullSecrets %v, want the ServiceAccount's", got)
	}
	if _, ok := p.Annotations[webhook.AnnotationInjected]; ok {
		t.Error("a webhook that is down annotated the Pod")
	}
}

// TestTLSAndRegistration: the CA Secret, the served certificate and the
// registered caBundle agree, and the configuration has the promised shape.
func TestTLSAndRegistration(t *testing.T) {
	c := env(t)
	ctx := context.Background()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.Get(ctx, client.ObjectKey{Name: "regcred"}, &mwc); err != nil {
		t.Fatal(err)
	}
	w := mwc.Webhooks[0]
	if *w.FailurePolicy != admissionregistrationv1.Fail || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy ||
		*w.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun || *w.TimeoutSeconds != 5 ||
		w.ClientConfig.URL == nil || !strings.HasPrefix(*w.ClientConfig.URL, "https://127.0.0.1:") {
		t.Errorf("webhook: %+v", w)
	}
	if len(w.Rules) != 1 || w.Rules[0].Resources[0] != "pods" || w.Rules[0].Operations[0] != admissionregistrationv1.Create {
		t.Errorf("rules %+v", w.Rules)
	}
	excluded := w.NamespaceSelector.MatchExpressions[0].Values
	for _, ns := range []string{"kube-system", "kube-node-lease", regcredNS} {
		if !slices.Contains(excluded, ns) {
			t.Errorf("namespace %s not excluded: %v", ns, excluded)
		}
	}
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: regcredNS, Name: "regcred-webhook-tls"}, &s); err != nil {
		t.Fatal(err)
	}
	if string(s.Data["ca.crt"]) != string(w.ClientConfig.CABundle) {
		t.Error("caBundle differs from the CA in the Secret")
	}
}
