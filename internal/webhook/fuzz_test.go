package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// FuzzAdmissionReview sends arbitrary bodies to the webhook's HTTP
// endpoint: it must never panic and must always answer a well-formed
// AdmissionReview. Neither the handler's nor controller-runtime's recovery
// is in the way, so a panic fails the fuzz.
func FuzzAdmissionReview(f *testing.F) {
	h, _ := newHandler(f, fixtures()...)
	wh := (&admission.Webhook{Handler: admission.HandlerFunc(h.handle)}).WithRecoverPanic(false)
	seedPod, _ := json.Marshal(pod("nginx", "harbor.internal/team/app:1"))
	for _, seed := range []string{
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"namespace":"apps","operation":"CREATE","object":` + string(seedPod) + `}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"2","kind":{"version":"v1","kind":"Pod"},"namespace":"apps","operation":"CREATE","object":{"spec":{"containers":[{"name":"a","image":"::::"}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"3","kind":{"version":"v1","kind":"Pod"},"namespace":"apps","operation":"CREATE","object":{"spec":{"initContainers":null,"ephemeralContainers":[{}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"4","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":"x"}}`,
		`{"request":null}`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		wh.ServeHTTP(rec, req)
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil {
			t.Fatalf("response is not JSON: %v\n%s", err, rec.Body.String())
		}
		if review.Response == nil {
			t.Fatalf("no response in %s", rec.Body.String())
		}
		var in admissionv1.AdmissionReview
		if json.Unmarshal(body, &in) == nil && in.Request != nil && review.Response.UID != in.Request.UID {
			t.Fatalf("response UID %q, request UID %q", review.Response.UID, in.Request.UID)
		}
		if review.Response.Allowed && review.Response.Patch != nil && review.Response.PatchType == nil {
			t.Fatal("patch without patch type")
		}
	})
}

// FuzzPodObject feeds arbitrary Pod objects to the handler, serialized as
// the API server sends them. The handler must not panic (its recovery is
// bypassed), its patch must apply to the object it was given and yield a
// valid Pod, and handling the patched Pod again must change nothing.
func FuzzPodObject(f *testing.F) {
	h, _ := newHandler(f, fixtures()...)
	withVolume := pod("nginx")
	withVolume.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "ghcr.io/acme/data:1"}}}}
	withSecrets := pod("harbor.internal/a/b:1")
	withSecrets.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "mine"}}
	withSecrets.Annotations = map[string]string{AnnotationInjected: "x", "a/b~c": "d"}
	withSecrets.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "registry.k8s.io/pause:3.10"}}
	withSecrets.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "docker.io/library/busybox"}}}
	for _, p := range []*corev1.Pod{
		pod("nginx", "harbor.internal/a/b:1"),
		pod("ghcr.io/acme/x@sha256:" + strings.Repeat("b", 64)),
		pod("", "UPPER/case", "registry.k8s.io/pause"),
		withVolume,
		withSecrets,
	} {
		b, _ := json.Marshal(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var in corev1.Pod
		if json.Unmarshal(raw, &in) != nil {
			return // the API server never sends what does not decode as a Pod
		}
		req := request(t, "apps", &in, false)
		resp := h.handle(context.Background(), req)
		if err := resp.Complete(req); err != nil {
			t.Fatalf("response does not complete: %v", err)
		}
		if !resp.Allowed {
			if resp.Result == nil || resp.Result.Code == 0 {
				t.Fatalf("denied without a code: %+v", resp)
			}
			return
		}
		if len(resp.Patches) == 0 {
			return
		}
		if resp.PatchType == nil {
			t.Fatal("patch without a patch type")
		}
		patch, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("patch does not decode: %v\n%s", err, resp.Patch)
		}
		patched, err := patch.Apply(req.Object.Raw)
		if err != nil {
			t.Fatalf("patch does not apply: %v\nobject %s\npatch %s", err, req.Object.Raw, resp.Patch)
		}
		var out corev1.Pod
		if err := json.Unmarshal(patched, &out); err != nil {
			t.Fatalf("patched object is not a Pod: %v\n%s", err, patched)
		}
		again := h.handle(context.Background(), request(t, "apps", &out, false))
		if !again.Allowed || len(again.Patches) > 0 {
			t.Fatalf("handling the patched Pod again changed it: %+v\npod %s", again, patched)
		}
	})
}
