package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// FuzzAdmissionReview sends arbitrary bodies to the webhook's HTTP
// endpoint: it must never panic and must always answer a well-formed
// AdmissionReview.
func FuzzAdmissionReview(f *testing.F) {
	h, _ := newHandler(f, fixtures()...)
	wh := &admission.Webhook{Handler: h}
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

// FuzzPodObject feeds arbitrary Pod objects straight to the handler.
func FuzzPodObject(f *testing.F) {
	h, _ := newHandler(f, fixtures()...)
	for _, p := range []*corev1PodSeed{
		{images: []string{"nginx", "harbor.internal/a/b:1"}},
		{images: []string{"ghcr.io/acme/x@sha256:" + strings.Repeat("b", 64)}},
		{images: []string{"", "UPPER/case", "registry.k8s.io/pause"}},
	} {
		b, _ := json.Marshal(pod(p.images...))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req := request(t, "apps", pod(), false)
		req.Object.Raw = raw
		resp := h.Handle(context.Background(), req)
		if err := resp.Complete(req); err != nil {
			t.Fatalf("response does not complete: %v", err)
		}
		if resp.Allowed && len(resp.Patches) > 0 && resp.PatchType == nil {
			t.Fatal("patch without a patch type")
		}
		if !resp.Allowed && (resp.Result == nil || resp.Result.Code == 0) {
			t.Fatalf("denied without a code: %+v", resp)
		}
	})
}

type corev1PodSeed struct{ images []string }
