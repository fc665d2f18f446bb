package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"regcred.dev/regcred/internal/egress"
	"regcred.dev/regcred/internal/testenv/testserver"
)

const marker = "HOSTILE-PAGE-MARKER"

// TestCheckHugeAnswers: a registry answering 100 MiB on the ping, the
// token endpoint, or the manifest fails the check promptly with a bounded
// message holding no body text, and the client stops reading at 64 KiB.
func TestCheckHugeAnswers(t *testing.T) {
	for _, where := range []string{"ping", "token", "manifest"} {
		t.Run(where, func(t *testing.T) {
			var written atomic.Int64
			var srv *httptest.Server
			srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.URL.Path == "/v2/" && where == "ping":
					testserver.Flood(w, r, http.StatusInternalServerError, marker, &written)
				case r.URL.Path == "/v2/":
					w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="reg"`, srv.URL))
					w.WriteHeader(http.StatusUnauthorized)
				case r.URL.Path == "/token" && where == "token":
					testserver.Flood(w, r, http.StatusUnauthorized, marker, &written)
				case r.URL.Path == "/token":
					_ = json.NewEncoder(w).Encode(map[string]string{"token": "t"})
				default:
					testserver.Flood(w, r, http.StatusNotFound, marker, &written)
				}
			}))
			defer srv.Close()
			start := time.Now()
			res := Check(context.Background(), strings.TrimPrefix(srv.URL, "https://")+"/org/app:v1",
				Credential{Username: "u", Password: "sekret"}, WithTransport(srv.Client().Transport))
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s", d)
			}
			if res.Reason == OK || len(res.Message) > 1024 || strings.Contains(res.Message, marker) {
				t.Fatalf("got %s (HTTP %d), %d-byte message %q; want a failure, bounded, without the body", res.Reason, res.HTTPStatus, len(res.Message), res.Message)
			}
			srv.CloseClientConnections()
			time.Sleep(100 * time.Millisecond)
			if n := written.Load(); n > 16<<20 {
				t.Errorf("the server wrote %d MiB: the client read on", n>>20)
			}
			t.Logf("%s: %s (HTTP %d) %q; server wrote %d KiB", where, res.Reason, res.HTTPStatus, res.Message, written.Load()>>10)
		})
	}
}

// TestCheckNeverQuotesBody: a token endpoint's error text — a marker and
// an echo of the request with the credential in it — is not copied into
// the result; the status and error codes are.
func TestCheckNeverQuotesBody(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="reg"`, srv.URL))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		// The token endpoint echoes the request: Basic auth and query.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		echoed := marker + " " + r.Header.Get("Authorization") + " " + r.URL.RawQuery
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": "DENIED", "message": echoed}}})
	}))
	defer srv.Close()
	res := Check(context.Background(), strings.TrimPrefix(srv.URL, "https://")+"/org/app:v1",
		Credential{Username: "robot", Password: "pa55word"}, WithTransport(srv.Client().Transport))
	if res.Reason != Denied || res.HTTPStatus != http.StatusForbidden || !strings.Contains(res.Message, "DENIED") {
		t.Fatalf("got %s (HTTP %d) %q, want Denied (403) naming DENIED", res.Reason, res.HTTPStatus, res.Message)
	}
	if strings.Contains(res.Message, marker) {
		t.Errorf("the body is quoted: %q", res.Message)
	}
	assertNoSecret(t, res, "pa55word", base64.StdEncoding.EncodeToString([]byte("robot:pa55word")), url.QueryEscape("pa55word"))
}

// TestCheckGuard: with a guard, a loopback registry is Blocked, named by
// class only; the guard's allow-list lets it through.
func TestCheckGuard(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(marker))
	}))
	defer srv.Close()
	image := strings.TrimPrefix(srv.URL, "https://") + "/org/app:v1"
	res := Check(context.Background(), image, Credential{}, WithTransport(srv.Client().Transport), WithGuard(&egress.Guard{}))
	if res.Reason != Blocked || res.Message != egress.ErrBlocked.Error() {
		t.Fatalf("guarded: %s %q, want Blocked %q", res.Reason, res.Message, egress.ErrBlocked)
	}
	g, err := egress.NewGuard([]string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	if res := Check(context.Background(), image, Credential{}, WithTransport(srv.Client().Transport), WithGuard(g)); res.Reason != NotFound {
		t.Fatalf("allowed: %s %q, want NotFound", res.Reason, res.Message)
	}
}

// TestCheckPlainHTTPOnlyWhenInsecure: go-containerregistry would fall back
// to plain HTTP for a loopback registry by itself; Check speaks it only
// when told the registry is insecure.
func TestCheckPlainHTTPOnlyWhenInsecure(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	image := strings.TrimPrefix(srv.URL, "http://") + "/org/app:v1"
	if res := Check(context.Background(), image, Credential{}); res.Reason != TLS || hits.Load() != 0 {
		t.Errorf("without insecure: %s %q, %d plain-HTTP requests; want TLS and none", res.Reason, res.Message, hits.Load())
	}
	if res := Check(context.Background(), image, Credential{}, WithInsecure(true)); res.Reason != NotFound {
		t.Errorf("insecure: %s %q, want NotFound", res.Reason, res.Message)
	}
}
