package release_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/webhook"
)

func chartDir() string { return filepath.Join(testenv.RepoRoot(), "charts", "regcred") }

// render runs `helm template` of the chart in the namespace regcred-system.
func render(t *testing.T, helm string, args ...string) []byte {
	t.Helper()
	out, err := renderErr(helm, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func renderErr(helm string, args ...string) ([]byte, error) {
	cmd := exec.Command(helm, append([]string{"template", "regcred", chartDir(), "--namespace", "regcred-system", "--kube-version", testenv.KubeVersion()}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, errors.New(err.Error() + ": " + stderr.String())
	}
	return out, nil
}

func objects(t *testing.T, manifest []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind string, into any) bool {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
				t.Fatalf("%s %s: %v", kind, u.GetName(), err)
			}
			return true
		}
	}
	return false
}

func kinds(objs []*unstructured.Unstructured) map[string]int {
	k := map[string]int{}
	for _, u := range objs {
		k[u.GetKind()]++
	}
	return k
}

func TestChartLint(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	for _, h := range []string{"helm3", "helm4"} {
		helm := testenv.Tool(t, h)
		for _, set := range [][]string{nil, {"--set", "webhook.certificates=cert-manager"}, {"--set", "webhook.enabled=false"}, {"--set", "nodeCredentials.enabled=true"}, {"--set", "podInjection=policy"}} {
			args := append([]string{"lint", "--strict", chartDir(), "--kube-version", testenv.KubeVersion()}, set...)
			if out, err := exec.Command(helm, args...).CombinedOutput(); err != nil {
				t.Errorf("%s lint %v: %v\n%s", h, set, err, out)
			}
		}
	}
}

func TestChartRejectsBadValues(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	helm := testenv.Tool(t, "helm3")
	for _, tc := range []struct {
		set  string
		want string
	}{
		{"webhook.failurePolicy=Sometimes", "failurePolicy"},
		{"webhook.certificates=vault", "certificates"},
		{"image.digest=latest", "digest"},
		{"replicaCount=0", "replicaCount"},
		{"webhook.timeoutSeconds=60", "timeoutSeconds"},
		{"log.level=trace", "level"},
		{"replicas=3", "replicas"},
		{"nodeCredentials.enabled=true,webhook.enabled=false", "nodeCredentials.enabled needs webhook.enabled"},
		{"nodeCredentials.audience=*", "audience"},
		{"podInjection=both", "podInjection"},
		{"nodeCredentials.cacheDuration=soon", "cacheDuration"},
		{"nodeCredentials.pluginDir=relative", "pluginDir"},
		{"registryCAs[0].key=ca.crt", "registryCAs"},
		{"registryCAs[0].configMap=ca,registryCAs[0].secret=ca,registryCAs[0].key=ca.crt", "registryCAs"},
		{"registryCAs[0].configMap=ca,registryCAs[0].key=../ca.crt", "registryCAs"},
	} {
		_, err := renderErr(helm, "--set", tc.set)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %s: %v, want an error naming %s", tc.set, err, tc.want)
		}
	}
}

// TestChartPlainTemplate renders the chart as many users do, with no
// cluster and no --kube-version: it renders where Helm assumes a version
// regcred supports, and otherwise the error says how to render it. A
// cluster older than 1.30 is refused with the same words.
func TestChartPlainTemplate(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	for _, h := range []string{"helm3", "helm4"} {
		helm := testenv.Tool(t, h)
		out, err := exec.Command(helm, "template", "rc", chartDir()).CombinedOutput()
		if err != nil {
			for _, want := range []string{"needs Kubernetes 1.30 or newer", "--kube-version 1.37"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("%s template without --kube-version: %v, and the error does not say %q:\n%s", h, err, want, out)
				}
			}
		} else if !bytes.Contains(out, []byte("kind: Deployment")) {
			t.Errorf("%s template without --kube-version rendered no Deployment:\n%s", h, out)
		}
		out, err = exec.Command(helm, "template", "rc", chartDir(), "--kube-version", "1.29.4").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "needs Kubernetes 1.30 or newer, and this is rendered for v1.29.4") {
			t.Errorf("%s template for 1.29.4: %v, want the version refused:\n%s", h, err, out)
		}
	}
}

// TestConfigDefaultIsTheChart keeps `kubectl apply -k config/default` and
// the chart from drifting: config/default/regcred.yaml is the chart
// rendered with its defaults (`make manifests`).
func TestConfigDefaultIsTheChart(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	got := render(t, testenv.Tool(t, "helm3"))
	path := filepath.Join(testenv.RepoRoot(), "config", "default", "regcred.yaml")
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := bytes.Cut(want, []byte("\n"))
	if !bytes.Equal(got, body) {
		t.Errorf("config/default/regcred.yaml is not the chart rendered with its defaults: run `make manifests`")
	}
}

func TestChartCRDsAreGenerated(t *testing.T) {
	bases := filepath.Join(testenv.RepoRoot(), "config", "crd", "bases")
	entries, err := os.ReadDir(bases)
	if err != nil {
		t.Fatal(err)
	}
	chartCRDs, err := os.ReadDir(filepath.Join(chartDir(), "crds"))
	if err != nil {
		t.Fatal(err)
	}
	if len(chartCRDs) != len(entries) {
		t.Errorf("charts/regcred/crds has %d files, config/crd/bases %d: run `make generate`", len(chartCRDs), len(entries))
	}
	for _, e := range entries {
		want, _ := os.ReadFile(filepath.Join(bases, e.Name()))
		got, err := os.ReadFile(filepath.Join(chartDir(), "crds", e.Name()))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("charts/regcred/crds/%s differs from config/crd/bases (%v): run `make generate`", e.Name(), err)
		}
	}
}

// TestChartRBACIsControllerGens: the chart's ClusterRole and its Role in
// regcred's namespace grant exactly what the code's RBAC markers ask for
// (config/rbac/role.yaml, `make generate`). The chart's other grants are
// optional or narrowed to a name, and TestChartRBACIsNeeded holds them.
func TestChartRBACIsControllerGens(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	chart := objects(t, render(t, testenv.Tool(t, "helm3")))
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	gen := objects(t, b)
	for _, kind := range []string{"ClusterRole", "Role"} {
		var chartRole, genRole rbacv1.ClusterRole // a Role's fields are the same
		if !findNamed(t, chart, kind, "regcred-manager", &chartRole) {
			t.Fatalf("the chart has no %s regcred-manager", kind)
		}
		if !findNamed(t, gen, kind, "regcred-manager", &genRole) {
			t.Fatalf("config/rbac/role.yaml has no %s regcred-manager (make generate)", kind)
		}
		if !equality.Semantic.DeepEqual(chartRole.Rules, genRole.Rules) {
			got, _ := yaml.Marshal(chartRole.Rules)
			want, _ := yaml.Marshal(genRole.Rules)
			t.Errorf("chart %s rules differ from config/rbac/role.yaml (make generate):\nchart:\n%s\ncontroller-gen:\n%s", kind, got, want)
		}
	}
}

// findNamed is find for the object of kind with name.
func findNamed(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) bool {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return true
		}
	}
	return false
}

// TestChartWebhookIsRegcreds: the configuration the chart installs is the
// one `regcred manager --webhook-register` would write.
func TestChartWebhookIsRegcreds(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	var chart admissionregistrationv1.MutatingWebhookConfiguration
	if !find(t, objects(t, render(t, testenv.Tool(t, "helm3"))), "MutatingWebhookConfiguration", &chart) {
		t.Fatal("the chart has no MutatingWebhookConfiguration")
	}
	path := webhook.Path
	port := int32(443)
	want := webhook.Config{Namespace: "regcred-system", ConfigurationName: "regcred",
		ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
			Namespace: "regcred-system", Name: "regcred-webhook", Path: &path, Port: &port}},
	}.Configuration(nil)
	if chart.Name != want.Name {
		t.Errorf("configuration name %q, want %q", chart.Name, want.Name)
	}
	if !equality.Semantic.DeepEqual(chart.Webhooks, want.Webhooks) {
		got, _ := yaml.Marshal(chart.Webhooks)
		w, _ := yaml.Marshal(want.Webhooks)
		t.Errorf("chart webhooks differ from regcred's:\nchart:\n%s\nregcred:\n%s", got, w)
	}
}

func TestChartSettings(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	helm := testenv.Tool(t, "helm3")
	digest := "sha256:" + strings.Repeat("ab", 32)
	objs := objects(t, render(t, helm, "--set", "imagePullSecrets[0].name=regcred-image-pull", "--set", "image.digest="+digest,
		"--set", "image.repository=harbor.example.com/platform/regcred", "--set", "webhook.failurePolicy=Fail"))
	k := kinds(objs)
	// ClusterRoles: the manager's, the webhook configuration's (by name)
	// and the admission policies' (list and delete in webhook mode); the
	// Role: the Lease and the TLS Secret in regcred's namespace.
	for kind, n := range map[string]int{"ServiceAccount": 1, "ClusterRole": 3, "ClusterRoleBinding": 3, "Role": 1, "RoleBinding": 1, "Deployment": 1, "Service": 2,
		"PodDisruptionBudget": 1, "MutatingWebhookConfiguration": 1, "NetworkPolicy": 1} {
		if k[kind] != n {
			t.Errorf("%d %s, want %d", k[kind], kind, n)
		}
	}
	var d appsv1.Deployment
	find(t, objs, "Deployment", &d)
	pod := d.Spec.Template.Spec
	if *d.Spec.Replicas != 2 || len(pod.TopologySpreadConstraints) != 1 {
		t.Errorf("replicas %d, topology spread %v", *d.Spec.Replicas, pod.TopologySpreadConstraints)
	}
	if len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "regcred-image-pull" {
		t.Errorf("imagePullSecrets %v", pod.ImagePullSecrets)
	}
	c := pod.Containers[0]
	if c.Image != "harbor.example.com/platform/regcred@"+digest {
		t.Errorf("image %q", c.Image)
	}
	sc := c.SecurityContext
	if sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container security context %+v", sc)
	}
	psc := pod.SecurityContext
	if psc == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v", psc)
	}
	for _, arg := range []string{"--leader-elect=true", "--webhook-register=false", "--webhook-certs=self", "--webhook-configuration-name=regcred"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != 5 {
		t.Errorf("no preStop sleep: %+v", c.Lifecycle)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	find(t, objs, "MutatingWebhookConfiguration", &mwc)
	if *mwc.Webhooks[0].FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("failurePolicy %s", *mwc.Webhooks[0].FailurePolicy)
	}

	// A private registry's CA for spec.verify: each a ConfigMap's or a
	// Secret's key, mounted read-only and named by --registry-ca-file.
	objs = objects(t, render(t, helm, "--set", "registryCAs[0].configMap=harbor-ca", "--set", "registryCAs[0].key=ca.crt",
		"--set", "registryCAs[1].secret=mirror-ca", "--set", "registryCAs[1].key=tls.crt"))
	find(t, objs, "Deployment", &d)
	pod = d.Spec.Template.Spec
	c = pod.Containers[0]
	for i, want := range []struct{ file, configMap, secret, key string }{
		{"/etc/regcred/registry-ca/0/ca.crt", "harbor-ca", "", "ca.crt"},
		{"/etc/regcred/registry-ca/1/tls.crt", "", "mirror-ca", "tls.crt"},
	} {
		if !slices.Contains(c.Args, "--registry-ca-file="+want.file) {
			t.Errorf("args %v lack --registry-ca-file=%s", c.Args, want.file)
		}
		vol := fmt.Sprintf("registry-ca-%d", i)
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == vol && m.ReadOnly && m.MountPath+"/"+want.key == want.file
		}) {
			t.Errorf("no read-only mount of %s for %s: %+v", vol, want.file, c.VolumeMounts)
		}
		i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == vol })
		if i < 0 {
			t.Fatalf("no volume %s: %+v", vol, pod.Volumes)
		}
		v := pod.Volumes[i].VolumeSource
		var items []corev1.KeyToPath
		switch {
		case want.configMap != "" && v.ConfigMap != nil && v.ConfigMap.Name == want.configMap:
			items = v.ConfigMap.Items
		case want.secret != "" && v.Secret != nil && v.Secret.SecretName == want.secret:
			items = v.Secret.Items
		default:
			t.Fatalf("volume %s is %+v, want configMap %q or secret %q", vol, v, want.configMap, want.secret)
		}
		if len(items) != 1 || items[0].Key != want.key || items[0].Path != want.key {
			t.Errorf("volume %s items %+v, want only %s", vol, items, want.key)
		}
	}

	// Without the webhook: no configuration, no webhook Service, and the
	// manager told so.
	objs = objects(t, render(t, helm, "--set", "webhook.enabled=false", "--set", "replicaCount=1"))
	k = kinds(objs)
	if k["MutatingWebhookConfiguration"] != 0 || k["Service"] != 1 || k["PodDisruptionBudget"] != 0 {
		t.Errorf("webhook.enabled=false, replicaCount=1 renders %v", k)
	}
	find(t, objs, "Deployment", &d)
	if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--webhook=false") {
		t.Errorf("args %v lack --webhook=false", d.Spec.Template.Spec.Containers[0].Args)
	}
}

// TestChartCertManagerGolden renders the cert-manager mode against a
// golden file (go test -run TestChartCertManagerGolden -update).
func TestChartCertManagerGolden(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	got := render(t, testenv.Tool(t, "helm3"), "--set", "webhook.certificates=cert-manager", "--set", "metrics.serviceMonitor.enabled=true")
	testenv.Golden(t, filepath.Join("testdata", "cert-manager.golden.yaml"), got)
	objs := objects(t, got)
	k := kinds(objs)
	// The chart's own CA (a self-signed Issuer, the CA Certificate, a CA
	// Issuer) and the serving certificate it signs.
	if k["Certificate"] != 2 || k["Issuer"] != 2 || k["ServiceMonitor"] != 1 {
		t.Errorf("cert-manager mode renders %v", k)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	find(t, objs, "MutatingWebhookConfiguration", &mwc)
	if mwc.Annotations["cert-manager.io/inject-ca-from"] != "regcred-system/regcred-webhook-cert" {
		t.Errorf("annotations %v", mwc.Annotations)
	}
	serving, ca := named(objs, "Certificate", "regcred-webhook-cert"), named(objs, "Certificate", "regcred-webhook-ca")
	if got := dig(serving, "spec", "issuerRef", "name"); got != "regcred-webhook-ca" {
		t.Errorf("the serving certificate is signed by %v, want the chart's CA Issuer", got)
	}
	if dig(ca, "spec", "isCA") != true || dig(ca, "spec", "privateKey", "rotationPolicy") != "Never" {
		t.Errorf("the chart's CA %v: want isCA and a key kept across renewals", ca["spec"])
	}

	// An Issuer of the user's own signs it: the chart makes no CA.
	objs = objects(t, render(t, testenv.Tool(t, "helm3"), "--set", "webhook.certificates=cert-manager",
		"--set", "webhook.certManager.issuerRef.name=corp-ca", "--set", "webhook.certManager.issuerRef.kind=ClusterIssuer"))
	if k := kinds(objs); k["Certificate"] != 1 || k["Issuer"] != 0 {
		t.Errorf("cert-manager mode with issuerRef renders %v", k)
	}
	serving = named(objs, "Certificate", "regcred-webhook-cert")
	if got := dig(serving, "spec", "issuerRef"); !reflect.DeepEqual(got, map[string]any{"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}) {
		t.Errorf("issuerRef %v", got)
	}
}

// named is the rendered object of kind and name, as decoded YAML, or nil.
func named(objs []*unstructured.Unstructured, kind, name string) map[string]any {
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return u.Object
		}
	}
	return nil
}

// dig is the value at path in a decoded object, or nil.
func dig(obj map[string]any, path ...string) any {
	var v any = obj
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// TestChartPodInjectionPolicyGolden renders podInjection=policy: no Pod
// webhook, the manager told so, and the grant to write admission
// policies only in this mode (the webhook mode may list and delete them).
func TestChartPodInjectionPolicyGolden(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	got := render(t, testenv.Tool(t, "helm3"), "--set", "podInjection=policy", "--set", "webhook.failurePolicy=Fail")
	testenv.Golden(t, filepath.Join("testdata", "pod-injection-policy.golden.yaml"), got)
	objs := objects(t, got)
	if k := kinds(objs); k["MutatingWebhookConfiguration"] != 0 {
		t.Errorf("policy mode renders a MutatingWebhookConfiguration: %v", k)
	}
	var d appsv1.Deployment
	find(t, objs, "Deployment", &d)
	args := d.Spec.Template.Spec.Containers[0].Args
	for _, want := range []string{"--pod-injection=policy", "--webhook-failure-policy=Fail", "--pod-injection-exclude-namespaces=kube-system,kube-public,kube-node-lease"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %v lack %s", args, want)
		}
	}
	var role rbacv1.ClusterRole
	findNamed(t, objs, "ClusterRole", "regcred-policies", &role)
	if len(role.Rules) != 1 || !slices.Contains(role.Rules[0].Resources, "mutatingadmissionpolicies") {
		t.Errorf("policies role %+v", role.Rules)
	}
	if !slices.Equal(role.Rules[0].Verbs, []string{"get", "list", "create", "update", "delete"}) {
		t.Errorf("policy mode's verbs %v", role.Rules[0].Verbs)
	}
	// The default (webhook) mode may only remove them.
	findNamed(t, objects(t, render(t, testenv.Tool(t, "helm3"))), "ClusterRole", "regcred-policies", &role)
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Verbs, []string{"list", "delete"}) {
		t.Errorf("the webhook mode grants %+v on admission policies, want list and delete only", role.Rules)
	}
}

// TestChartServerSideDryRun sends every rendered object to the real API
// server as a dry-run create: the API server's own validation, defaulting
// and admission (with regcred's CRDs installed).
func TestChartServerSideDryRun(t *testing.T) {
	testenv.SkipShort(t, "runs Helm and an API server")
	helm := testenv.Tool(t, "helm3")
	cp := suite.ControlPlane(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "regcred-system"}}
	if err := cp.Client.Create(ctx, ns); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	for _, set := range [][]string{nil, {"--set", "webhook.enabled=false"}, {"--set", "podInjection=policy"}, {"--set", "imagePullSecrets[0].name=pull", "--set", "image.digest=sha256:" + strings.Repeat("0", 64)},
		{"--set", "nodeCredentials.enabled=true", "--set", "imagePullSecrets[0].name=pull"}} {
		objs := objects(t, render(t, helm, set...))
		if len(objs) < 6 {
			t.Fatalf("%v renders only %d objects", set, len(objs))
		}
		for _, u := range objs {
			if err := cp.Client.Create(ctx, u, client.DryRunAll); err != nil {
				t.Errorf("%v: dry-run create %s %s: %v", set, u.GetKind(), u.GetName(), err)
			}
		}
	}
}

// TestValuesAreDocumented: every value of the chart (each leaf of
// values.yaml, and each map a person sets whole) has a row in
// docs/install.md, so the reference cannot fall behind the chart.
func TestValuesAreDocumented(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, m map[string]any)
	n := 0
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			path := prefix + k
			row := bytes.Contains(doc, []byte("| `"+path+"` |"))
			// A map documented whole (a nodeSelector) has no rows for
			// its keys.
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 && !row {
				walk(path+".", sub)
				continue
			}
			n++
			if !row {
				t.Errorf("value %s has no row in docs/install.md", path)
			}
		}
	}
	walk("", values)
	if n < 50 {
		t.Fatalf("only %d values found in values.yaml", n)
	}
}
