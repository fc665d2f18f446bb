package registry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/keyring"
)

// plainRegistry is a registry over plain HTTP that accepts user:pass.
func plainRegistry(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "pass" {
			w.Header().Set("WWW-Authenticate", `Basic realm="reg"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("a", 64))
		w.Header().Set("Content-Length", "2")
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Try goes through the candidates in order until one works, and with
// WithInsecureFromKey speaks plain HTTP only for a candidate whose key says
// http://.
func TestTry(t *testing.T) {
	host := plainRegistry(t)
	image := host + "/app:1"
	ctx := context.Background()
	opts := []Option{WithTimeout(5 * time.Second), WithInsecureFromKey()}
	res := Try(ctx, image, []keyring.Credential{
		{Key: host, Entry: dockercfg.Entry{Username: "user", Password: "pass"}, Origin: "a"},
		{Key: "http://" + host, Entry: dockercfg.Entry{Username: "wrong", Password: "nope"}, Origin: "b"},
		{Key: "http://" + host, Entry: dockercfg.Entry{Username: "user", Password: "pass"}, Origin: "c"},
		{Key: "http://" + host, Entry: dockercfg.Entry{Username: "user", Password: "pass"}, Origin: "d"},
	}, opts...)
	if !res.PullWouldSucceed || len(res.Attempts) != 3 {
		t.Fatalf("got %+v, want success at the third attempt", res)
	}
	if a := res.Attempts[0]; a.Reason == OK || a.Source != "a" {
		t.Errorf("https-only key spoke plain HTTP: %+v", a)
	}
	if a := res.Attempts[1]; a.Reason != Unauthorized || a.Username != "wrong" {
		t.Errorf("wrong password: %+v", a)
	}
	if a := res.Attempts[2]; a.Reason != OK || a.Source != "c" || a.Key != "http://"+host {
		t.Errorf("working candidate: %+v", a)
	}

	anon := Try(ctx, image, nil, WithTimeout(5*time.Second), WithInsecure(true))
	if anon.PullWouldSucceed || len(anon.Attempts) != 1 || !anon.Attempts[0].Anonymous || anon.Attempts[0].Reason != Unauthorized {
		t.Errorf("no candidates: got %+v, want one refused anonymous attempt", anon)
	}
}
