package registry

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testregistry"
	"regcred.dev/regcred/internal/testenv/testsuite"
)

var suite = testsuite.New()

func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }

// TestCheckAgainstRealRegistry covers every class the distribution registry
// of the harness can produce, in both auth modes.
func TestCheckAgainstRealRegistry(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	for _, mode := range []testregistry.AuthMode{testregistry.Basic, testregistry.Token} {
		t.Run(string(mode), func(t *testing.T) {
			reg := suite.Registry(t, mode)
			ctx := context.Background()
			digest, err := reg.PushRandomImage(ctx, "check/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			valid := Credential{Username: reg.User.Name, Password: reg.User.Password}
			trust := WithRootCAs(reg.CA.CertPool())

			for _, tc := range []struct {
				name   string
				image  string
				cred   Credential
				opts   []Option
				want   Reason
				status int
				hint   string
			}{
				{"valid", reg.Ref("check/app:v1"), valid, nil, OK, 0, ""},
				{"valid by digest", reg.Ref("check/app@" + digest.String()), valid, nil, OK, 0, ""},
				{"wrong password", reg.Ref("check/app:v1"), Credential{Username: reg.User.Name, Password: "wrong-password"}, nil, Unauthorized, 401, ""},
				{"anonymous", reg.Ref("check/app:v1"), Credential{}, nil, Unauthorized, 401, ""},
				{"missing repository", reg.Ref("check/nope:v1"), valid, nil, NotFound, 404, ""},
				{"missing tag", reg.Ref("check/app:v2"), valid, nil, NotFound, 404, ""},
				{"untrusted CA", reg.Ref("check/app:v1"), valid, []Option{WithRootCAs(nil)}, TLS, 0, ""},
			} {
				t.Run(tc.name, func(t *testing.T) {
					opts := append([]Option{trust}, tc.opts...)
					res := Check(ctx, tc.image, tc.cred, opts...)
					if res.Reason != tc.want || res.HTTPStatus != tc.status {
						t.Fatalf("got %s (HTTP %d): %s; want %s (HTTP %d)", res.Reason, res.HTTPStatus, res.Message, tc.want, tc.status)
					}
					if tc.want == OK && res.Digest != digest.String() {
						t.Errorf("digest = %s, want %s", res.Digest, digest)
					}
					if res.Hint == "" {
						t.Error("no hint")
					}
					assertNoSecret(t, res, reg.User.Password, "wrong-password")
				})
			}
			if mode == testregistry.Token {
				res := Check(ctx, reg.Ref("check/app:v1"), Credential{Username: reg.User.Name, Password: "wrong-password"}, trust)
				if !strings.Contains(res.Hint, "token service") {
					t.Errorf("token-mode wrong password hint %q does not point at the token service", res.Hint)
				}
			}
		})
	}
}

func TestCheckTokenScopeWithoutAccess(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	reg, err := testregistry.Start(testregistry.Token, testregistry.WithUser(testregistry.User{Name: "reader", Password: "reader-pw", Repositories: []string{"public/*"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if _, err := reg.PushRandomImage(context.Background(), "private/app:v1"); err != nil {
		t.Fatal(err)
	}
	res := Check(context.Background(), reg.Ref("private/app:v1"), Credential{Username: "reader", Password: "reader-pw"}, WithRootCAs(reg.CA.CertPool()))
	if res.Reason != Unauthorized {
		t.Fatalf("got %s: %s", res.Reason, res.Message)
	}
	if !strings.Contains(res.Hint, "may not pull this repository") {
		t.Errorf("hint %q should say the credential may lack access", res.Hint)
	}
}

// TestCheckClassifiesHTTPAnswers covers answers the distribution registry
// never gives (Harbor, GHCR and Docker Hub do), with a server that speaks
// just enough of the registry API.
func TestCheckClassifiesHTTPAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		code    string
		headers map[string]string
		want    Reason
	}{
		{"403 denied", 403, "DENIED", nil, Denied},
		{"403 without body", 403, "", nil, Denied},
		{"404 manifest unknown", 404, "MANIFEST_UNKNOWN", nil, NotFound},
		{"429 Docker Hub", 429, "TOOMANYREQUESTS", map[string]string{"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600"}, RateLimited},
		{"500", 500, "", nil, Other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/" {
					w.WriteHeader(http.StatusOK)
					return
				}
				for k, v := range tc.headers {
					w.Header().Set(k, v)
				}
				if tc.code != "" {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tc.status)
					_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": tc.code, "message": "m"}}})
					return
				}
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "https://")
			res := Check(context.Background(), host+"/org/app:v1", Credential{Username: "u", Password: "sekret"}, WithTransport(srv.Client().Transport))
			if res.Reason != tc.want {
				t.Fatalf("got %s (HTTP %d): %s; want %s", res.Reason, res.HTTPStatus, res.Message, tc.want)
			}
			if tc.want == RateLimited {
				if res.RateLimit == nil || res.RateLimit.Remaining != 0 || res.RateLimit.Limit != 100 || res.RateLimit.Window != "6h0m0s" {
					t.Errorf("rate limit = %+v, want 0 of 100 per 6h", res.RateLimit)
				}
			}
			assertNoSecret(t, res, "sekret")
		})
	}
}

func TestCheckRecordsRateLimitOnSuccess(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("ratelimit-remaining", "76;w=21600")
		w.Header().Set("ratelimit-limit", "100;w=21600")
		w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("a", 64))
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Content-Length", "10")
	}))
	defer srv.Close()
	res := Check(context.Background(), strings.TrimPrefix(srv.URL, "https://")+"/library/nginx:latest", Credential{}, WithTransport(srv.Client().Transport))
	if res.Reason != OK || res.RateLimit == nil || res.RateLimit.Remaining != 76 {
		t.Fatalf("got %+v", res)
	}
}

func TestCheckNetworkFailures(t *testing.T) {
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close()

	// A server that accepts and never answers.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	// A plain-HTTP server where HTTPS is expected.
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()

	for _, tc := range []struct {
		name  string
		image string
		opts  []Option
		want  Reason
	}{
		{"connection refused", closed + "/app:v1", nil, Connection},
		{"no answer", hang.Addr().String() + "/app:v1", []Option{WithTimeout(300 * time.Millisecond)}, Timeout},
		{"plain HTTP on a TLS port", strings.TrimPrefix(plain.URL, "http://") + "/app:v1", nil, TLS},
		{"unresolvable host", "registry.does-not-exist.invalid/app:v1", []Option{WithTimeout(5 * time.Second)}, DNS},
		{"invalid reference", "UPPER CASE", nil, Other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Check(context.Background(), tc.image, Credential{Username: "u", Password: "sekret"}, tc.opts...)
			if res.Reason != tc.want {
				t.Fatalf("got %s: %s; want %s", res.Reason, res.Message, tc.want)
			}
			assertNoSecret(t, res, "sekret")
		})
	}
}

func TestReasonsHaveHints(t *testing.T) {
	seen := map[string]Reason{}
	for _, r := range Reasons {
		h := r.Hint()
		if h == "" || strings.Contains(h, "\n") {
			t.Errorf("%s: hint %q is not one line", r, h)
		}
		if other, dup := seen[h]; dup {
			t.Errorf("%s and %s share a hint", r, other)
		}
		seen[h] = r
	}
}

func assertNoSecret(t *testing.T, res Result, secrets ...string) {
	t.Helper()
	b, _ := json.Marshal(res)
	for _, s := range secrets {
		if strings.Contains(string(b), s) {
			t.Errorf("result leaks %q: %s", s, b)
		}
	}
}
