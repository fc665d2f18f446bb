package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/cli"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/doctor"
	"regcred.dev/regcred/internal/kubeletmsg"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// doctorCase is one cause of a pull failure, produced for real on the
// node: the kubelet's own Events are what the doctor reads.
type doctorCase struct {
	name      string
	cause     kubeletmsg.Cause
	diagnosis doctor.Diagnosis
	// hosts maps a registry host to its name in the golden files.
	hosts map[string]string
	ns    string
}

// TestDoctor produces each cause of a failed pull on the real node — no
// credential, a wrong password, a revoked user, a missing Secret, a
// malformed Secret, an image that does not exist (in an image volume), an
// excluded namespace, a namespace the selector does not pick, a Pod older
// than its credential, the webhook down, a registry answering 429 with
// Docker Hub's headers, an untrusted certificate, a closed port, an
// invalid name — and checks `regcred doctor`'s classification, diagnosis
// and fix, in text and JSON, against golden files.
func TestDoctor(t *testing.T) {
	e := withRegcred(t)
	shared := e.ownRegistry(t, testregistry.Basic)
	var cases []*doctorCase
	add := func(name string, cause kubeletmsg.Cause, diag doctor.Diagnosis, nsLabels map[string]string, hosts ...*testregistry.Registry) *doctorCase {
		c := &doctorCase{name: name, cause: cause, diagnosis: diag, hosts: map[string]string{shared.Host: "shared.registry"}}
		for i, r := range hosts {
			c.hosts[r.Host] = fmt.Sprintf("%s%d.registry", name, i)
		}
		c.ns = e.namespace(t, "doctor-"+name, nsLabels)
		cases = append(cases, c)
		return c
	}
	create := func(o client.Object) { e.create(t, o) }

	// No credential anywhere for the registry; the image is an init
	// container's.
	c := add("nocred", kubeletmsg.Unauthorized, doctor.DiagNoCredential, nil)
	p := pod(c.ns, "app", shared.Ref("app:1"))
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: shared.Ref("app:1"), ImagePullPolicy: corev1.PullAlways}}
	create(p)

	// A tenant's credential with a wrong password.
	c = add("wrongpass", kubeletmsg.Unauthorized, doctor.DiagCredentialRejected, nil)
	e.tenantCredential(t, c.ns, "robot", shared.Host, shared.User.Name, "not-the-password")
	e.waitSynced(t, &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "robot"}})
	create(pod(c.ns, "app", shared.Ref("app:1")))

	// A user that worked, then was revoked.
	revokedReg := e.ownRegistry(t, testregistry.Token)
	c = add("revoked", kubeletmsg.Unauthorized, doctor.DiagCredentialRejected, nil, revokedReg)
	e.tenantCredential(t, c.ns, "robot", revokedReg.Host, revokedReg.User.Name, revokedReg.User.Password)
	e.waitSynced(t, &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "robot"}})
	create(pod(c.ns, "before", revokedReg.Ref("app:1")))
	e.waitRunning(t, c.ns, "before")
	if err := revokedReg.SetPassword(revokedReg.User.Name, "revoked-"+c.ns); err != nil {
		t.Fatal(err)
	}
	create(pod(c.ns, "app", revokedReg.Ref("app:1")))

	// The Pod lists a Secret that does not exist.
	c = add("missing", kubeletmsg.MissingSecret, doctor.DiagMissingSecret, nil)
	p = pod(c.ns, "app", shared.Ref("app:1"))
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "gone"}}
	create(p)

	// The Pod lists a Secret the kubelet cannot parse (valid JSON, so the
	// API server takes it; an auth that is not base64).
	c = add("malformed", kubeletmsg.MalformedSecret, doctor.DiagMalformedSecret, nil)
	bad := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "broken"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"` + shared.Host + `":{"auth":"!!not base64!!"}}}`)}}
	create(bad)
	p = pod(c.ns, "app", shared.Ref("app:1"))
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "broken"}}
	create(p)

	// A working credential, and an image volume whose image is not there.
	c = add("notfound", kubeletmsg.NotFound, doctor.DiagImageNotFound, nil)
	e.tenantCredential(t, c.ns, "robot", shared.Host, shared.User.Name, shared.User.Password)
	e.waitSynced(t, &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "robot"}})
	p = pod(c.ns, "app", shared.Ref("app:1"))
	p.Spec.Volumes = []corev1.Volume{{Name: "model", VolumeSource: corev1.VolumeSource{
		Image: &corev1.ImageVolumeSource{Reference: shared.Ref("model:missing"), PullPolicy: corev1.PullAlways}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "model", MountPath: "/model"}}
	create(p)

	// A ClusterRegistryCredential that excludes the namespace.
	excludedReg := e.ownRegistry(t, testregistry.Basic)
	c = add("excluded", kubeletmsg.Unauthorized, doctor.DiagNamespaceExcluded, labels("e2e", "doctor-excluded"), excludedReg)
	e.sourceSecret(t, regcredNS, "doctor-excluded", excludedReg)
	e.waitSynced(t, e.clusterCredential(t, "doctor-excluded", "doctor-excluded", labels("e2e", "doctor-excluded"), []string{excludedReg.Host}, func(cr *v1alpha1.ClusterRegistryCredential) {
		cr.Spec.ExcludeNamespaces = []string{c.ns}
	}))
	create(pod(c.ns, "app", excludedReg.Ref("app:1")))

	// A ClusterRegistryCredential whose selector does not pick the
	// namespace.
	selectReg := e.ownRegistry(t, testregistry.Basic)
	c = add("notselected", kubeletmsg.Unauthorized, doctor.DiagNamespaceNotSelected, nil, selectReg)
	e.sourceSecret(t, regcredNS, "doctor-notselected", selectReg)
	e.waitSynced(t, e.clusterCredential(t, "doctor-notselected", "doctor-notselected", labels("e2e", "doctor-selected"), []string{selectReg.Host}, nil))
	create(pod(c.ns, "app", selectReg.Ref("app:1")))

	// The Pod was made before the credential: regcred then syncs the
	// Secret and patches the ServiceAccount, but the kubelet never
	// re-reads the Pod's pull secrets.
	lateReg := e.ownRegistry(t, testregistry.Basic)
	c = add("predates", kubeletmsg.Unauthorized, doctor.DiagPodPredatesCredential, labels("e2e", "doctor-predates"), lateReg)
	create(pod(c.ns, "app", lateReg.Ref("app:1")))
	e.waitPullFailure(t, c.ns, "app")
	// Creation times count whole seconds: the credential must come in a
	// later one for "before" to be seen.
	e.waitNextSecond(t, c.ns, "app")
	e.sourceSecret(t, regcredNS, "doctor-predates", lateReg)
	predates := e.clusterCredential(t, "doctor-predates", "doctor-predates", labels("e2e", "doctor-predates"), []string{lateReg.Host}, nil)
	e.waitServiceAccountLists(t, c.ns, "default", "regcred-doctor-predates")
	e.waitSynced(t, predates)

	// The webhook is down (failurePolicy Ignore) when the Pod is made;
	// only the webhook would have given it the Secret.
	downReg := e.ownRegistry(t, testregistry.Basic)
	c = add("webhookdown", kubeletmsg.Unauthorized, doctor.DiagWebhookNotCalled, labels("e2e", "doctor-webhookdown"), downReg)
	e.sourceSecret(t, regcredNS, "doctor-webhookdown", downReg)
	e.waitSynced(t, e.clusterCredential(t, "doctor-webhookdown", "doctor-webhookdown", labels("e2e", "doctor-webhookdown"), []string{downReg.Host}, func(cr *v1alpha1.ClusterRegistryCredential) {
		cr.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
	}))
	e.withWebhookDown(t, func() { create(pod(c.ns, "app", downReg.Ref("app:1"))) })

	// A registry that rate-limits like Docker Hub.
	limitReg := e.rateLimitedRegistry(t)
	c = add("ratelimited", kubeletmsg.RateLimited, doctor.DiagRateLimited, nil, limitReg)
	limited := c
	e.tenantCredential(t, c.ns, "robot", limitReg.Host, limitReg.User.Name, limitReg.User.Password)
	e.waitSynced(t, &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "robot"}})
	create(pod(c.ns, "app", limitReg.Ref("ratelimited/app:1")))

	// A registry whose certificate the node does not trust: the node
	// trusts another CA for it.
	untrusted, err := testregistry.Start(testregistry.Basic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(untrusted.Close)
	if err := e.TrustHost(untrusted.Host, shared.CAFile); err != nil {
		t.Fatal(err)
	}
	c = add("tls", kubeletmsg.TLS, doctor.DiagNetwork, nil, untrusted)
	create(pod(c.ns, "app", untrusted.Ref("app:1")))

	// Nothing listens on the port.
	closed := closedPort(t)
	c = add("connection", kubeletmsg.Connection, doctor.DiagNetwork, nil)
	c.hosts[closed] = "closed.registry"
	create(pod(c.ns, "app", closed+"/app:1"))

	// A reference the kubelet cannot parse.
	c = add("invalid", kubeletmsg.InvalidImageName, doctor.DiagInvalidImageName, nil)
	create(pod(c.ns, "app", shared.Host+"/App:1"))

	for _, c := range cases {
		e.waitDoctorSees(t, c)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text, code := e.runDoctor(t, "-n", c.ns)
			if code != 1 {
				t.Errorf("exit code %d, want 1:\n%s", code, text)
			}
			testenv.Golden(t, filepath.Join("testdata", "doctor", c.name+".txt"), []byte(c.normalize(text)))
			js, _ := e.runDoctor(t, "-n", c.ns, "-o", "json")
			var r doctor.Report
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				t.Fatalf("-o json: %v\n%s", err, js)
			}
			if len(r.Findings) == 0 || r.Findings[0].Cause != c.cause || r.Findings[0].Diagnosis != c.diagnosis {
				t.Errorf("findings %+v, want cause %s diagnosis %s", r.Findings, c.cause, c.diagnosis)
			}
			testenv.Golden(t, filepath.Join("testdata", "doctor", c.name+".json"), []byte(c.normalize(js)))
		})
	}

	t.Run("check", func(t *testing.T) {
		// --check asks the registry and shows the rate limit.
		text, code := e.runDoctor(t, "-n", limited.ns, "--check", "--ca-file", limitReg.CAFile)
		if code != 1 || !strings.Contains(text, "rate limit: 0 of 100 pulls left") || !strings.Contains(text, "RateLimited (HTTP 429)") {
			t.Errorf("exit %d, want the registry's 429 and Docker Hub's remaining pulls:\n%s", code, text)
		}
	})
	t.Run("pod and deployment scope", func(t *testing.T) {
		text, code := e.runDoctor(t, "pod/app", "-n", cases[0].ns)
		if code != 1 || !strings.Contains(text, "init container init") {
			t.Errorf("exit %d:\n%s", code, text)
		}
		if _, code := e.runDoctor(t, "pod/nope", "-n", cases[0].ns); code != 2 {
			t.Errorf("a Pod that does not exist: exit %d, want 2", code)
		}
		if text, code := e.runDoctor(t, "-n", "default"); code != 0 || !strings.Contains(text, "No Pod fails to pull") {
			t.Errorf("a namespace without failures: exit %d:\n%s", code, text)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		// The manager counted the same kubelet Events: by the registry key
		// of a credential that covers the image, "other" for registries no
		// credential covers, "none" for a missing Secret.
		for _, want := range []struct{ registry, reason string }{
			{shared.Host, "Unauthorized"},
			{limitReg.Host, "RateLimited"},
			{"other", "Connection"},
			{"other", "TLS"},
			{"none", "MissingSecret"},
		} {
			testenv.Eventually(t, pullWait, func(context.Context) error {
				if n := pullFailureCount(t, want.registry, want.reason); n < 1 {
					return fmt.Errorf("regcred_image_pull_failures_total{registry=%q,reason=%q} = %v", want.registry, want.reason, n)
				}
				return nil
			})
		}
		if n := pullFailureCount(t, closed, "Connection"); n != 0 {
			t.Errorf("a registry no credential covers has its own label value (%v)", n)
		}
		// And the pulls, for the success rate: the revoked user's Pod
		// that ran before, and the one after.
		for _, result := range []string{"success", "failure"} {
			testenv.Eventually(t, pullWait, func(context.Context) error {
				if n := counterValue(t, "regcred_image_pulls_total", map[string]string{"registry": revokedReg.Host, "result": result}); n < 1 {
					return fmt.Errorf("regcred_image_pulls_total{registry=%q,result=%q} = %v", revokedReg.Host, result, n)
				}
				return nil
			})
		}
	})
	t.Run("prometheus", e.prometheusJudges)
	t.Run("secrets never appear", func(t *testing.T) {
		all, _ := e.runDoctor(t, "-o", "json", "--check", "--ca-file", shared.CAFile)
		for _, secret := range []string{shared.User.Password, revokedReg.User.Password, limitReg.User.Password, excludedReg.User.Password} {
			if strings.Contains(all, secret) {
				t.Errorf("the report holds a password")
			}
		}
	})
}

func (e env) create(t *testing.T, o client.Object) {
	t.Helper()
	if err := e.c.Create(bg, o); err != nil {
		t.Fatal(err)
	}
}

// normalize replaces what changes from run to run: namespace names,
// registry ports, and whether the kubelet is pulling or backing off.
func (c *doctorCase) normalize(s string) string {
	s = strings.ReplaceAll(s, c.ns, "doctor-"+c.name)
	dashed := strings.NewReplacer(".", "-", ":", "-")
	for host, name := range c.hosts {
		s = strings.ReplaceAll(s, host, name)
		s = strings.ReplaceAll(s, url.QueryEscape(host), url.QueryEscape(name))
		s = strings.ReplaceAll(s, dashed.Replace(host), dashed.Replace(name))
	}
	s = strings.ReplaceAll(s, "ImagePullBackOff", "ErrImagePull")
	return s
}

// runDoctor runs `regcred doctor ARGS` against the cluster.
func (e env) runDoctor(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Execute(append([]string{"doctor", "--kubeconfig", e.Kubeconfig, "--regcred-namespace", regcredNS}, args...), nil, &out, &errOut)
	if errOut.Len() > 0 {
		t.Logf("stderr: %s", errOut.String())
	}
	return out.String(), code
}

// waitDoctorSees waits until the kubelet has reported the failure the case
// is about, so that the doctor reads it.
func (e env) waitDoctorSees(t *testing.T, c *doctorCase) {
	t.Helper()
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		text, _ := e.runDoctor(t, "-n", c.ns, "-o", "json")
		var r doctor.Report
		if err := json.Unmarshal([]byte(text), &r); err != nil {
			return fmt.Errorf("%v: %s", err, text)
		}
		if len(r.Findings) == 0 || r.Findings[0].Cause != c.cause || r.Findings[0].KubeletMessage == "" {
			return fmt.Errorf("%s: no finding of cause %s yet: %s", c.name, c.cause, text)
		}
		// The golden files hold the kubelet's Event, not the waiting
		// status that comes before it (a malformed Secret has none).
		if c.cause != kubeletmsg.MalformedSecret && !strings.HasPrefix(r.Findings[0].KubeletMessage, "Failed to ") {
			return fmt.Errorf("%s: the kubelet's Event has not come yet: %s", c.name, r.Findings[0].KubeletMessage)
		}
		return nil
	})
}

// waitNextSecond waits until the clock is in a later second than the
// Pod's creation time.
func (e env) waitNextSecond(t *testing.T, ns, name string) {
	t.Helper()
	var p corev1.Pod
	if err := e.c.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, pullWait, func(context.Context) error {
		if !time.Now().After(p.CreationTimestamp.Add(time.Second)) {
			return fmt.Errorf("still in the second the Pod was made")
		}
		return nil
	})
}

// tenantCredential makes a RegistryCredential in ns whose source Secret
// holds user and password for host.
func (e env) tenantCredential(t *testing.T, ns, name, host, user, password string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-source"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: testenv.DockerConfigJSON(t, host, user, password)}}
	e.create(t, s)
	rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	rc.Spec.Registries = []string{host}
	rc.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: s.Name}
	e.create(t, rc)
	t.Cleanup(func() { e.deleteAndWait(t, rc) })
}

// waitSynced waits until a credential is Ready.
func (e env) waitSynced(t *testing.T, obj client.Object) {
	t.Helper()
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		c, err := credential.From(obj)
		if err != nil {
			return err
		}
		if r := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady); r != nil && r.Status == metav1.ConditionTrue && r.ObservedGeneration == obj.GetGeneration() {
			return nil
		}
		return fmt.Errorf("%s not Ready: %v", obj.GetName(), c.Status.Conditions)
	})
}

func (e env) waitServiceAccountLists(t *testing.T, ns, sa, secret string) {
	t.Helper()
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		var s corev1.ServiceAccount
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: sa}, &s); err != nil {
			return err
		}
		if !containsRef(s.ImagePullSecrets, secret) {
			return fmt.Errorf("ServiceAccount %s/%s lists %v", ns, sa, s.ImagePullSecrets)
		}
		return nil
	})
}

func containsRef(refs []corev1.LocalObjectReference, name string) bool {
	for _, r := range refs {
		if r.Name == name {
			return true
		}
	}
	return false
}

// withWebhookDown points regcred's webhook registration at a port nobody
// listens on while fn runs, as when every replica is down: with
// failurePolicy Ignore the API server admits Pods without it.
func (e env) withWebhookDown(t *testing.T, fn func()) {
	t.Helper()
	var cfgs admissionregistrationv1.MutatingWebhookConfigurationList
	if err := e.c.List(bg, &cfgs); err != nil {
		t.Fatal(err)
	}
	var cfg *admissionregistrationv1.MutatingWebhookConfiguration
	for i := range cfgs.Items {
		if len(cfgs.Items[i].Webhooks) == 1 && cfgs.Items[i].Webhooks[0].Name == doctor.WebhookName {
			cfg = &cfgs.Items[i]
		}
	}
	if cfg == nil {
		t.Fatal("regcred's webhook is not registered")
	}
	orig := cfg.DeepCopy()
	down := cfg.DeepCopy()
	down.Webhooks[0].ClientConfig.URL = ptr.To("https://" + closedPort(t) + "/mutate-pods")
	down.Webhooks[0].FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
	if err := e.c.Update(bg, down); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		var cur admissionregistrationv1.MutatingWebhookConfiguration
		if err := e.c.Get(bg, client.ObjectKeyFromObject(orig), &cur); err != nil {
			t.Error(err)
			return
		}
		cur.Webhooks = orig.Webhooks
		if err := e.c.Update(bg, &cur); err != nil {
			t.Error(err)
		}
	}
	defer restore()
	fn()
}

// rateLimitedRegistry is a token registry, trusted by the node, whose
// repository ratelimited/app answers every request like Docker Hub over
// its limit: 429 with ratelimit headers.
func (e env) rateLimitedRegistry(t *testing.T) *testregistry.Registry {
	t.Helper()
	limited := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("ratelimit-limit", "100;w=21600")
		w.Header().Set("ratelimit-remaining", "0;w=21600")
		w.Header().Set("docker-ratelimit-source", "127.0.0.1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"}]}`))
	})
	reg, err := testregistry.Start(testregistry.Token, testregistry.WithHandler("/v2/ratelimited/", limited))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	if err := e.TrustRegistry(reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

// pullFailureCount reads regcred_image_pull_failures_total of the
// manager running in this process.
func pullFailureCount(t *testing.T, registry, reason string) float64 {
	t.Helper()
	return counterValue(t, "regcred_image_pull_failures_total", map[string]string{"registry": registry, "reason": reason})
}

// counterValue reads a counter of the manager running in this process.
func counterValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// closedPort is a loopback host:port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
