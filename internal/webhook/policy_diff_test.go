package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	objs := policytest.Objects()
	cat := catalogueOf(objs...)
	nss := namespacesOf(objs)
	corpus := policytest.Corpus()
	if len(corpus) < 200 {
		t.Fatalf("corpus of %d Pods, want at least 200", len(corpus))
	}
	r := policy.Render(cat.Injection(), policy.Options{Namespace: "regcred-system"})
	if len(r.Policies) < 2 {
		t.Fatalf("%d policies: the corpus has no tenant policy", len(r.Policies))
	}
	reversed := slices.Clone(r.Policies)
	slices.Reverse(reversed)
	changed := 0
	// The API server runs the policies in no fixed order: a namespace's
	// policy before the first one (which rewrites images) gives the
	// same Pod, but for the order of the added Secrets.
	for _, run := range []struct {
		name     string
		policies []*admissionregistrationv1.MutatingAdmissionPolicy
		anyOrder bool
	}{{"in order", r.Policies, false}, {"policies reversed", reversed, true}} {
		ev, err := policytest.New(run.policies)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range corpus {
			ns := nss[c.Namespace]
			want := webhookResult(cat, ns, c.Pod)
			got, err := ev.Admit(context.Background(), c.Pod, ns)
			if err != nil {
				t.Fatalf("case %d (%s), %s: %v", i, describe(c.Pod), run.name, err)
			}
			if run.anyOrder {
				bySecretName := func(a, b corev1.LocalObjectReference) int { return strings.Compare(a.Name, b.Name) }
				slices.SortFunc(want.Spec.ImagePullSecrets, bySecretName)
				slices.SortFunc(got.Pod.Spec.ImagePullSecrets, bySecretName)
			} else if !equalPods(want, c.Pod) {
				changed++
			}
			if diff := cmp.Diff(want, got.Pod); diff != "" {
				t.Errorf("case %d in %s (%s), %s: webhook (-) and policy (+) differ:\n%s", i, c.Namespace, describe(c.Pod), run.name, diff)
			}
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
