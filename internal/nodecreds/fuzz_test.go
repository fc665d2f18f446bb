package nodecreds

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
)

// FuzzBrokerRequest feeds arbitrary bodies to the broker: it never
// panics, never answers 200 without a token the API server accepts for a
// Pod that passes the checks, and every refusal is one short line.
func FuzzBrokerRequest(f *testing.F) {
	e := newEnv(f, Options{NodeQPS: 1e9, NodeBurst: 1 << 30, ReviewQPS: 1e9, ReviewBurst: 1 << 30})
	valid := map[string]bool{}
	for pod, tok := range e.tokens {
		if pod != "apps/sneaky" {
			valid[tok] = true
		}
	}
	f.Add(requestBody("harbor.example.com/app:1", e.tokens["apps/web"]))
	f.Add(requestBody("harbor.example.com/team/app", e.tokens["apps/build"]))
	f.Add(requestBody("harbor.example.com/app:1", e.tokens["apps/sneaky"]))
	f.Add(requestBody("harbor.example.com/app:1", jwt(time.Now().Add(time.Hour))))
	f.Add(requestBody("", ""))
	f.Add([]byte(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"x","serviceAccountToken":"a.b.c"}`))
	f.Add([]byte(`{"apiVersion":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte{0xff, 0x00, '{'})
	f.Fuzz(func(t *testing.T, body []byte) {
		w := e.post(body)
		if w.Code == http.StatusOK {
			var req credentialproviderv1.CredentialProviderRequest
			if err := json.Unmarshal(body, &req); err != nil || !valid[req.ServiceAccountToken] {
				t.Fatalf("200 for a request without a valid token: %q", body)
			}
			var resp credentialproviderv1.CredentialProviderResponse
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.CacheKeyType != credentialproviderv1.ImagePluginCacheKeyType {
				t.Fatalf("200 but not a CredentialProviderResponse: %q", w.Body)
			}
			return
		}
		line := strings.TrimSuffix(w.Body.String(), "\n")
		if strings.Contains(line, "\n") || len(line) > 1024 {
			t.Fatalf("HTTP %d reason is not one line: %q", w.Code, line)
		}
		for tok := range valid {
			if strings.Contains(w.Body.String(), tok) {
				t.Fatalf("HTTP %d quotes a token", w.Code)
			}
		}
		if w.Code == http.StatusInternalServerError {
			t.Fatalf("HTTP 500 for a request: %q", line)
		}
	})
}

// TestFuzzSeedsRefusals runs the fuzz seeds once through a broker the
// fuzzer does not share, checking the expected refusals.
func TestFuzzSeedsRefusals(t *testing.T) {
	e := newEnv(t, Options{})
	for body, want := range map[string]int{
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"x","serviceAccountToken":"a.b.c"}`: http.StatusUnauthorized,
		`{"apiVersion":1}`: http.StatusBadRequest,
		`null`:             http.StatusBadRequest,
	} {
		r := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(body))
		w := httptest.NewRecorder()
		e.broker.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("%s: HTTP %d %q, want %d", body, w.Code, w.Body, want)
		}
	}
}
