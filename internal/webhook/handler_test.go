package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/testenv"
)

type ensurer struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]error
}

func (e *ensurer) EnsureSecret(_ context.Context, c *credential.Entry, namespace string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, string(c.Kind)+"/"+c.Name+"@"+namespace)
	return e.fail[c.Name]
}

func scheme(t testing.TB) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func cred(name string, registries ...string) *v1alpha1.ClusterRegistryCredential {
	c := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: name}}
	c.Spec.Registries = registries
	c.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: name}
	return c
}

func fixtures() []client.Object {
	disabled := cred("no-injection", "ghcr.io")
	disabled.Spec.PodInjection.Enabled = ptr.To(false)
	teamOnly := cred("team-b-only", "quay.io")
	teamOnly.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}
	tenant := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "tenant-ghcr"}}
	tenant.Spec.Registries = []string{"ghcr.io/acme"}
	tenant.Spec.SecretName = "ghcr-acme"
	other := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "elsewhere", Name: "other-tenant"}}
	other.Spec.Registries = []string{"ghcr.io"}
	mirror := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "airgap"}}
	mirror.Spec.Mirrors = []v1alpha1.MirrorRule{{Source: "docker.io", Mirror: "harbor.internal/dockerhub"}, {Source: "registry.k8s.io", Mirror: "harbor.internal/k8s"}}
	return []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"team": "a"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "quiet", Labels: map[string]string{LabelInject: "false"}}},
		cred("harbor", "harbor.internal"),
		cred("ecr-prod", "*.dkr.ecr.eu-west-1.amazonaws.com"),
		cred("hub", "docker.io"),
		disabled, teamOnly, tenant, other, mirror,
	}
}

func newHandler(t testing.TB, objs ...client.Object) (*Handler, *ensurer) {
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(objs...).Build()
	e := &ensurer{fail: map[string]error{}}
	h := &Handler{Reader: c, Secrets: e, Catalogue: catalogueOf(objs...), Log: logr.Discard()}
	return h, e
}

// catalogueOf compiles the credentials and mirrors among objs, as
// cachefeed does from the informers.
func catalogueOf(objs ...client.Object) *credential.Catalogue {
	cat := credential.NewCatalogue("regcred-system")
	for _, o := range objs {
		cat.Put(o)
	}
	cat.MarkSynced()
	return cat
}

func request(t testing.TB, ns string, pod *corev1.Pod, dryRun bool) admission.Request {
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: ns,
		Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}, DryRun: &dryRun,
	}}
}

func pod(images ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "apps"}}
	for i, img := range images {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c" + string(rune('0'+i)), Image: img})
	}
	return p
}

func TestHandlerGolden(t *testing.T) {
	withInit := pod("registry.example.com/app:1")
	withInit.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "harbor.internal/team/migrate:2"}}
	withInit.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/tools:1"}}}
	already := pod("harbor.internal/team/app:1")
	already.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "user-secret"}, {Name: "regcred-harbor"}}
	optedOut := pod("harbor.internal/team/app:1")
	optedOut.Labels = map[string]string{LabelInject: "false"}
	keepsOthers := pod("harbor.internal/team/app:1", "ghcr.io/acme/api:3")
	keepsOthers.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "user-secret"}}
	keepsOthers.Annotations = map[string]string{"existing": "annotation"}
	// Image volumes: one from a credential's registry, one rewritten to the
	// mirror (and so the mirror's credential), one unparsable (left alone).
	withVolumes := pod("registry.example.com/app:1")
	withVolumes.Spec.Volumes = []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "model", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/models/llm:1"}}},
		{Name: "tools", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "alpine:3.20"}}},
		{Name: "broken", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "UPPER/case"}}},
	}

	for _, tc := range []struct {
		name      string
		ns        string
		pod       *corev1.Pod
		dryRun    bool
		wantCalls []string
	}{
		{"one-match", "apps", pod("harbor.internal/team/app:1"), false, []string{"ClusterRegistryCredential/harbor@apps"}},
		{"no-match", "apps", pod("registry.example.com/app:1"), false, nil},
		{"init-and-ephemeral-containers", "apps", withInit, false, []string{"ClusterRegistryCredential/ecr-prod@apps", "ClusterRegistryCredential/harbor@apps"}},
		{"mirror-then-mirror-credential", "apps", pod("nginx", "registry.k8s.io/pause:3.10@sha256:"+strings.Repeat("a", 64)), false, []string{"ClusterRegistryCredential/harbor@apps"}},
		{"already-listed", "apps", already, false, nil},
		{"pod-opted-out", "apps", optedOut, false, nil},
		{"namespace-opted-out", "quiet", pod("harbor.internal/team/app:1"), false, nil},
		{"dry-run-creates-nothing", "apps", pod("harbor.internal/team/app:1"), true, nil},
		{"keeps-other-secrets-and-annotations", "apps", keepsOthers, false, []string{"ClusterRegistryCredential/harbor@apps", "RegistryCredential/tenant-ghcr@apps"}},
		{"image-volumes", "apps", withVolumes, false, []string{"ClusterRegistryCredential/ecr-prod@apps", "ClusterRegistryCredential/harbor@apps"}},
		{"injection-disabled-and-other-namespaces", "apps", pod("ghcr.io/other/x:1", "quay.io/x/y:1"), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, e := newHandler(t, fixtures()...)
			resp := h.Handle(context.Background(), request(t, tc.ns, tc.pod, tc.dryRun))
			if !resp.Allowed {
				t.Fatalf("not allowed: %+v", resp.Result)
			}
			got, err := json.MarshalIndent(resp.Patches, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, filepath.Join("testdata", "golden", tc.name+".json"), append(got, '\n'))
			slices.Sort(e.calls)
			if !slices.Equal(e.calls, tc.wantCalls) {
				t.Errorf("EnsureSecret calls %v, want %v", e.calls, tc.wantCalls)
			}
		})
	}
}

// TestReinvocationIsIdempotent feeds the mutated Pod back in, as the API
// server does with reinvocationPolicy IfNeeded.
func TestReinvocationIsIdempotent(t *testing.T) {
	h, _ := newHandler(t, fixtures()...)
	p := pod("nginx:1.27", "harbor.internal/team/app:1", "ghcr.io/acme/api:3")
	resp := h.Handle(context.Background(), request(t, "apps", p, false))
	if len(resp.Patches) == 0 {
		t.Fatal("first call changed nothing")
	}
	mutated := applyPatch(t, p, resp)
	again := h.Handle(context.Background(), request(t, "apps", mutated, false))
	if !again.Allowed || len(again.Patches) != 0 {
		t.Errorf("second call patched again: %+v", again.Patches)
	}
	if got := mutated.Annotations[AnnotationInjected]; got != "apps/tenant-ghcr,harbor" {
		t.Errorf("injected annotation %q", got)
	}
	if got := mutated.Spec.Containers[0].Image; got != "harbor.internal/dockerhub/library/nginx:1.27" {
		t.Errorf("image %q", got)
	}
	if got := mutated.Annotations[AnnotationRewritten]; got != `{"c0":"nginx:1.27"}` {
		t.Errorf("rewritten annotation %q", got)
	}
}

func TestEnsureFailureDropsTheSecret(t *testing.T) {
	h, e := newHandler(t, fixtures()...)
	e.fail["harbor"] = errors.New("source Secret regcred-system/harbor not found")
	resp := h.Handle(context.Background(), request(t, "apps", pod("harbor.internal/team/app:1", "nginx"), false))
	if !resp.Allowed {
		t.Fatal("not allowed")
	}
	mutated := applyPatch(t, pod("harbor.internal/team/app:1", "nginx"), resp)
	if len(mutated.Spec.ImagePullSecrets) != 0 {
		t.Errorf("a Secret that could not be ensured was injected: %v", mutated.Spec.ImagePullSecrets)
	}
	if _, ok := mutated.Annotations[AnnotationInjected]; ok {
		t.Errorf("annotation names a dropped credential: %v", mutated.Annotations)
	}
	if mutated.Spec.Containers[1].Image != "harbor.internal/dockerhub/library/nginx:latest" {
		t.Errorf("mirror rewrite lost: %s", mutated.Spec.Containers[1].Image)
	}
	if len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], "not added") {
		t.Errorf("warnings %v", resp.Warnings)
	}
}

func TestBadRequests(t *testing.T) {
	h, _ := newHandler(t, fixtures()...)
	for _, tc := range []struct {
		name string
		req  admission.Request
		code int32
	}{
		{"garbage object", admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "u", Operation: admissionv1.Create,
			Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "apps", Object: runtime.RawExtension{Raw: []byte("{not json")}}}, 400},
		{"no object", admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "u", Operation: admissionv1.Create,
			Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "apps"}}, 400},
		{"unknown namespace", request(t, "missing", pod("nginx"), false), 500},
	} {
		resp := h.Handle(context.Background(), tc.req)
		if resp.Allowed || resp.Result == nil || resp.Result.Code != tc.code {
			t.Errorf("%s: %+v", tc.name, resp.Result)
		}
	}
	update := request(t, "apps", pod("harbor.internal/x:1"), false)
	update.Operation = admissionv1.Update
	if resp := h.Handle(context.Background(), update); !resp.Allowed || len(resp.Patches) != 0 {
		t.Errorf("UPDATE was mutated: %+v", resp)
	}
}

func applyPatch(t *testing.T, p *corev1.Pod, resp admission.Response) *corev1.Pod {
	t.Helper()
	raw, _ := json.Marshal(p)
	patch, err := json.Marshal(resp.Patches)
	if err != nil {
		t.Fatal(err)
	}
	out, err := applyJSONPatch(raw, patch)
	if err != nil {
		t.Fatal(err)
	}
	var mutated corev1.Pod
	if err := json.Unmarshal(out, &mutated); err != nil {
		t.Fatal(err)
	}
	return &mutated
}

// TestPatchEqualsDiff: the hand-written patch, applied to the original
// Pod, gives exactly the mutated Pod, over many generated Pods.
func TestPatchEqualsDiff(t *testing.T) {
	h, _ := newHandler(t, fixtures()...)
	snap, err := h.snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"team": "a"}}}
	images := []string{"nginx", "harbor.internal/x:1", "ghcr.io/acme/a:1", "registry.k8s.io/pause:3", "quay.io/a/b", "example.com/z", "::bad::"}
	for i := range 500 {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
		if i%3 == 0 {
			p.Annotations = map[string]string{"a/b~c": "x", AnnotationInjected: "old"}
		}
		if i%4 == 0 {
			p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "mine"}}
		}
		for j := range 1 + i%4 {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", j), Image: images[(i+j*3)%len(images)]})
		}
		if i%5 == 0 {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: images[i%len(images)]}}
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "dbg", Image: images[(i+1)%len(images)]}}}
		}
		if i%6 == 0 {
			p.Spec.Volumes = []corev1.Volume{
				{Name: "empty", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "img", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: images[(i+2)%len(images)]}}},
			}
		}
		mutated := p.DeepCopy()
		annotate(mutated, mutate(mutated, ns, snap))
		want, _ := json.Marshal(mutated)
		got := applyPatch(t, p, admission.Patched("", patchFor(p, mutated)...))
		gotJSON, _ := json.Marshal(got)
		if string(gotJSON) != string(want) {
			t.Fatalf("pod %d: patch result differs\n got %s\nwant %s", i, gotJSON, want)
		}
	}
}
