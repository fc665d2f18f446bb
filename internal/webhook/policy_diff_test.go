package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/policy"
	"regcred.dev/regcred/internal/policy/policytest"
)

// The differential tests of Pod injection: the webhook (mutate, the Go
// pipeline) and the generated MutatingAdmissionPolicies (CEL) must give
// identical Pods. Here in process, with the API server's own CEL
// compiler and JSON patcher; integration_policy_test.go runs the same
// corpus through a real API server.

// diffObjects are the credentials, mirrors and namespaces of the corpus:
// globs, ports, paths, Docker Hub keys and aliases, tenants, selectors,
// exclusions, a credential that is off and one that is Node-delivered.
func diffObjects() []client.Object {
	selected := cred("team-b-quay", "quay.io")
	selected.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}
	expr := cred("not-team-b", "gcr.io/shared")
	expr.Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "team", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"b"}},
		{Key: "tier", Operator: metav1.LabelSelectorOpDoesNotExist},
	}}
	excluded := cred("excluded-in-apps", "excluded.example.com")
	excluded.Spec.ExcludeNamespaces = []string{"apps"}
	off := cred("off", "off.example.com")
	off.Spec.PodInjection.Enabled = ptr.To(false)
	node := cred("node-only", "node.example.com")
	node.Spec.Delivery = v1alpha1.DeliveryNode
	node.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsAll
	sameSecret := cred("same-secret-b", "harbor.internal/team")
	sameSecret.Spec.SecretName = "regcred-harbor"
	tenant := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "tenant-ghcr"}}
	tenant.Spec.Registries = []string{"ghcr.io/acme", "https://ghcr.io/v2/acme-two/"}
	tenant.Spec.SecretName = "ghcr-acme"
	tenant.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
	other := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "other-tenant"}}
	other.Spec.Registries = []string{"ghcr.io", "weird\"key\\with'quotes.example.com"}
	other.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
	hostile := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "hostile"}}
	hostile.Spec.Registries = []string{"x') || true || ('", "[a.]b.example.com", "[^a]c.example.com", "d*.example.com", "\\e.example.com", "[", "a|b.example.com"}
	hostile.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
	airgap := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "airgap"}}
	airgap.Spec.Mirrors = []v1alpha1.MirrorRule{
		{Source: "docker.io", Mirror: "harbor.internal/dockerhub"},
		{Source: "registry.k8s.io", Mirror: "harbor.internal/k8s"},
		{Source: "docker.io/bitnami", Mirror: "mirror.example.com:5000/bitnami"},
	}
	teamMirror := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "b-team"}}
	teamMirror.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}
	teamMirror.Spec.Mirrors = []v1alpha1.MirrorRule{{Source: "ghcr.io/acme", Mirror: "harbor.internal/acme"}, {Source: "index.docker.io", Mirror: "other.example.com/hub"}}
	return []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"team": "a", corev1.LabelMetadataName: "apps"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b", Labels: map[string]string{"team": "b", corev1.LabelMetadataName: "team-b"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tiered", Labels: map[string]string{"tier": "1", corev1.LabelMetadataName: "tiered"}}},
		cred("harbor", "harbor.internal"),
		cred("ecr-prod", "*.dkr.ecr.eu-west-1.amazonaws.com"),
		cred("hub", "docker.io"),
		cred("hub-index", "https://index.docker.io/v1/"),
		cred("ports", "localhost:5000", "127.0.0.1:5001/team", "[::1]:5002"),
		cred("glob-labels", "reg?.example.com", "*.*.example.org", "[a-c]x.example.net/p"),
		cred("path-prefix", "example.com/team"),
		cred("mirror-port", "mirror.example.com:5000"),
		selected, expr, excluded, off, node, sameSecret, tenant, other, hostile, airgap, teamMirror,
	}
}

type diffCase struct {
	ns  string
	pod *corev1.Pod
}

// diffCorpus is at least 200 Pods: the kubelet matching vectors as
// images, the webhook's golden shapes, and combinations.
func diffCorpus() []diffCase {
	images := []string{
		"nginx", "nginx:1.27", "library/nginx", "docker.io/nginx", "docker.io/library/nginx:1", "index.docker.io/library/nginx",
		"bitnami/redis:7", "docker.io/bitnami/redis", "docker.io/bitnamilegacy/redis", "user/app@sha256:" + strings.Repeat("a", 64),
		"registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10@sha256:" + strings.Repeat("b", 64),
		"harbor.internal/team/app:1", "harbor.internal/teams/app", "harbor.internal:443/team/app", "sub.harbor.internal/app",
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com/tools:1", "dkr.ecr.eu-west-1.amazonaws.com/x", "1.dkr.ecr.eu-west-2.amazonaws.com/x",
		"localhost:5000/app", "localhost/app", "localhost:5001/app", "127.0.0.1:5001/team/x", "127.0.0.1:5001/other", "[::1]:5002/v6", "[::1]/v6",
		"reg1.example.com/a", "regxx.example.com/a", "a.b.example.org/c", "a.example.org/c", "bx.example.net/p/q", "dx.example.net/p", "bx.example.net/q",
		"example.com/team/app", "example.com/teams/app", "example.com/te", "quay.io/x/y:1", "gcr.io/shared/img", "gcr.io/other/img",
		"excluded.example.com/a", "off.example.com/a", "node.example.com/a", "ghcr.io/acme/api:3", "ghcr.io/acme-two/x", "ghcr.io/other/x",
		"ab.example.com/x", "bc.example.com/x", "ac.example.com/x", "dzz.example.com/x", "e.example.com/x", "UPPER/case", "Upper.example.com/x",
		"::::", "", "nginx@sha256:abc", "nginx@md5:" + strings.Repeat("a", 32), "a/b/c/d/e/f:tag", strings.Repeat("a", 64),
		"Registry.Example.com:5000/app", "mirror.example.com:5000/bitnami/x", "docker.io/library/" + strings.Repeat("x", 240),
		"weird\"key\\with'quotes.example.com/a",
	}
	namespaces := []string{"apps", "team-b", "tiered"}
	var out []diffCase
	for _, img := range images {
		for _, ns := range namespaces {
			out = append(out, diffCase{ns, pod(img)})
		}
	}
	// Shapes: several images, init containers, image volumes, present
	// Secrets, annotations before, opt-outs.
	for i := 0; i+2 < len(images); i += 3 {
		p := pod(images[i], images[i+1])
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: images[i+2]}}
		p.Spec.Volumes = []corev1.Volume{
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "model", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: images[(i+5)%len(images)]}}},
		}
		switch i % 4 {
		case 0:
			p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "user-secret"}, {Name: "regcred-harbor"}}
		case 1:
			p.Annotations = map[string]string{AnnotationInjected: "earlier,apps/x", "other": "kept"}
		case 2:
			p.Annotations = map[string]string{AnnotationRewritten: `{"c0":"before"}`}
		case 3:
			p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "ghcr-acme"}}
		}
		out = append(out, diffCase{[]string{"apps", "team-b", "tiered"}[i%3], p})
	}
	optOut := pod("harbor.internal/team/app:1")
	optOut.Labels = map[string]string{LabelInject: "false"}
	out = append(out, diffCase{"apps", optOut})
	return out
}

// webhookResult is what the webhook makes of a Pod, with every Secret
// it asks for made.
func webhookResult(cat *credential.Catalogue, ns *corev1.Namespace, p *corev1.Pod) *corev1.Pod {
	out := p.DeepCopy()
	if out.Labels[LabelInject] == "false" || ns.Labels[LabelInject] == "false" {
		return out
	}
	d := mutate(out, ns, &view{cat: cat, images: &imageCache{}})
	annotate(out, d)
	return out
}

func renderFor(t testing.TB, cat *credential.Catalogue) *policytest.Evaluator {
	r := policy.Render(cat.Injection(), policy.Options{Namespace: "regcred-system"})
	ev, err := policytest.New(r.Policies)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func namespacesOf(objs []client.Object) map[string]*corev1.Namespace {
	out := map[string]*corev1.Namespace{}
	for _, o := range objs {
		if ns, ok := o.(*corev1.Namespace); ok {
			out[ns.Name] = ns
		}
	}
	return out
}

func TestPoliciesAgreeWithTheWebhook(t *testing.T) {
	objs := diffObjects()
	cat := catalogueOf(objs...)
	ev := renderFor(t, cat)
	nss := namespacesOf(objs)
	corpus := diffCorpus()
	if len(corpus) < 200 {
		t.Fatalf("corpus of %d Pods, want at least 200", len(corpus))
	}
	changed := 0
	for i, c := range corpus {
		ns := nss[c.ns]
		want := webhookResult(cat, ns, c.pod)
		got, err := ev.Admit(context.Background(), c.pod, ns)
		if err != nil {
			t.Fatalf("case %d (%s): %v", i, describe(c.pod), err)
		}
		if diff := cmp.Diff(want, got.Pod); diff != "" {
			t.Errorf("case %d in %s (%s): webhook (-) and policy (+) differ:\n%s", i, c.ns, describe(c.pod), diff)
		}
		if !equalPods(want, c.pod) {
			changed++
		}
	}
	// The corpus must exercise injection, not only agree on no-ops.
	if changed < len(corpus)/3 {
		t.Errorf("only %d of %d Pods changed", changed, len(corpus))
	}
	t.Logf("%d Pods, %d changed by both", len(corpus), changed)
}

func equalPods(a, b *corev1.Pod) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func describe(p *corev1.Pod) string {
	var imgs []string
	for _, im := range credential.PodImages(&p.Spec) {
		imgs = append(imgs, fmt.Sprintf("%s=%q", im.Where, im.Ref))
	}
	return strings.Join(imgs, " ")
}

// FuzzPoliciesAgreeWithTheWebhook generates registry keys and images and
// checks that the webhook and the policies agree.
func FuzzPoliciesAgreeWithTheWebhook(f *testing.F) {
	for _, s := range [][3]string{
		{"harbor.internal", "harbor.internal/team/app:1", "docker.io"},
		{"*.example.com:5000/p", "a.example.com:5000/pq", "a.example.com:5000"},
		{"[a-c]?.io", "bz.io/x@sha256:" + strings.Repeat("c", 64), "bz.io/x"},
		{"https://index.docker.io/v1/", "busybox", ""},
		{"[::1]:5000", "[::1]:5000/x", "docker.io/library"},
		{"[^.]x.y", "ax.y/z", "ax.y"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, key, image, source string) {
		// API objects travel as JSON: their strings are valid UTF-8.
		if len(key) > 200 || len(image) > 300 || len(source) > 100 || !utf8.ValidString(key+image+source) {
			return
		}
		objs := []client.Object{cred("fuzz", key), cred("fuzz-2", "mirror.example.com")}
		if source != "" {
			m := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "m"}}
			m.Spec.Mirrors = []v1alpha1.MirrorRule{{Source: source, Mirror: "mirror.example.com/m"}}
			objs = append(objs, m)
		}
		cat := catalogueOf(objs...)
		ev := renderFor(t, cat)
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{corev1.LabelMetadataName: "apps"}}}
		p := pod(image)
		p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: image + "x"}}}}
		want := webhookResult(cat, ns, p)
		got, err := ev.Admit(context.Background(), p, ns)
		if err != nil {
			t.Fatalf("key %q image %q source %q: %v", key, image, source, err)
		}
		if diff := cmp.Diff(want, got.Pod); diff != "" {
			t.Errorf("key %q image %q source %q: webhook (-) and policy (+) differ:\n%s", key, image, source, diff)
		}
	})
}
