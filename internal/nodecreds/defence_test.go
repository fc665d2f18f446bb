package nodecreds

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func claimsToken(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

// TestPrecheckSpendsNoReview: tokens whose own claims cannot pass are
// refused before a TokenReview, so garbage spends no budget.
func TestPrecheckSpendsNoReview(t *testing.T) {
	bound := map[string]any{"pod": map[string]string{"name": "p", "uid": "u"}, "node": map[string]string{"name": "n", "uid": "u"}}
	for _, tc := range []struct {
		name, token, says string
	}{
		{"another audience", claimsToken(map[string]any{"aud": []string{"api"}, "exp": time.Now().Add(time.Hour).Unix(), "kubernetes.io": bound}), "not for audience"},
		{"audience as a string", claimsToken(map[string]any{"aud": "other", "exp": time.Now().Add(time.Hour).Unix(), "kubernetes.io": bound}), "not for audience"},
		{"expired", claimsToken(map[string]any{"aud": DefaultAudience, "exp": time.Now().Add(-time.Minute).Unix(), "kubernetes.io": bound}), "expired"},
		{"no expiry", claimsToken(map[string]any{"aud": DefaultAudience, "kubernetes.io": bound}), "no expiry"},
		{"not bound to a Pod", claimsToken(map[string]any{"aud": DefaultAudience, "exp": time.Now().Add(time.Hour).Unix()}), "not bound to a Pod on a node"},
		{"claims not JSON", "a." + base64.RawURLEncoding.EncodeToString([]byte("{")) + ".c", "not JSON"},
		{"not base64", "a.!!!.c", "not a JWT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			w := e.ask("harbor.example.com/app", tc.token)
			if w.Code != http.StatusUnauthorized && w.Code != http.StatusForbidden {
				t.Fatalf("HTTP %d %s, want 401 or 403", w.Code, w.Body)
			}
			if !contains(w.Body.String(), tc.says) {
				t.Errorf("reason %q does not say %q", w.Body, tc.says)
			}
			if n := e.review.calls.Load(); n != 0 {
				t.Errorf("%d TokenReviews spent on a token that cannot pass", n)
			}
		})
	}
}

// TestRefusedPodIsRemembered: a token whose Pod can never be served (it
// mounts the audience itself) is refused once with a Pod read, then from
// memory: a replay loop costs no API reads and none of the node's budget.
func TestRefusedPodIsRemembered(t *testing.T) {
	var reads *countingReader
	e := newEnv(t, Options{NodeQPS: 1e-6, NodeBurst: 2}, func(e *env) { reads = &countingReader{Reader: e.client} })
	b, err := New(Deps{Catalogue: e.cat, Source: e.src, Pods: reads, Cached: e.client, Review: e.review.create, Log: e.broker.log}, e.broker.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.broker = b
	for i := 0; i < 5; i++ {
		refusedAs(t, e, e.ask("harbor.example.com/app", e.tokens["apps/sneaky"]), http.StatusForbidden, "mounts a ServiceAccount token")
	}
	if n := reads.gets.Load(); n != 1 {
		t.Errorf("%d Pod reads for 5 replays, want 1", n)
	}
	// The first refusal took one of the two in the burst; the second is
	// still there for apps/web.
	if w := e.ask("harbor.example.com/app", e.tokens["apps/web"]); w.Code != http.StatusOK {
		t.Errorf("after the replays, a good Pod on the node: HTTP %d %s", w.Code, w.Body)
	}
}

// TestNodeShareIsPerNamespace: one namespace's Pods using up a node's
// rate leave the other namespaces' share of that node alone.
func TestNodeShareIsPerNamespace(t *testing.T) {
	e := newEnv(t, Options{NodeQPS: 1e-6, NodeBurst: 1})
	if w := e.ask("harbor.example.com/app", e.tokens["apps/web"]); w.Code != http.StatusOK {
		t.Fatalf("HTTP %d %s", w.Code, w.Body)
	}
	refusedAs(t, e, e.ask("harbor.example.com/app", e.tokens["apps/build"]), http.StatusTooManyRequests, "over its request rate for namespace apps")
	if w := e.ask("harbor.example.com/app", e.tokens["other/x"]); w.Code == http.StatusTooManyRequests {
		t.Errorf("namespace other limited by apps' use of the node: %s", w.Body)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
