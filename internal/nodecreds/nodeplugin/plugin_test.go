package nodeplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"

	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/testenv/testserver"
)

const token = "eyJhbGciOiJSUzI1NiJ9.SECRET-TOKEN.sig"

func request(image, tok string) string {
	b, _ := json.Marshal(map[string]any{
		"apiVersion":          "credentialprovider.kubelet.k8s.io/v1",
		"kind":                "CredentialProviderRequest",
		"image":               image,
		"serviceAccountToken": tok,
	})
	return string(b)
}

const goodAnswer = `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image","cacheDuration":"1m0s","auth":{"registry.example.com":{"username":"u","password":"p"}}}`

// broker starts a TLS broker stub whose handler is h; it returns the
// server and a CA file that trusts it.
func broker(t *testing.T, h http.HandlerFunc, hosts ...string) (*testserver.TLS, string) {
	t.Helper()
	srv, err := testserver.StartTLS(h, nil, "broker-ca", hosts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, srv.CA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return srv, ca
}

func answer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

func reject(status int, reason string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, reason)
	}
}

// runPlugin runs the plugin and checks what holds for every failure:
// nothing on stdout, a one-line error without the token.
func runPlugin(t *testing.T, stdin io.Reader, opts Options) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := Run(context.Background(), stdin, &out, opts)
	if err != nil {
		if out.Len() != 0 {
			t.Errorf("failure wrote to stdout: %q", out.String())
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("error is not one line: %q", err)
		}
		if strings.Contains(err.Error(), "SECRET-TOKEN") {
			t.Errorf("error carries the token: %q", err)
		}
	}
	return out.String(), err
}

func TestRunSuccess(t *testing.T) {
	var got atomic.Value
	srv, ca := broker(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type") + " " + string(b))
		answer(goodAnswer)(w, r)
	})
	for _, server := range []string{srv.URL, srv.URL + "/"} {
		req := request("registry.example.com/team/app:1", token)
		out, err := runPlugin(t, strings.NewReader(req), Options{Server: server, CAFile: ca})
		if err != nil {
			t.Fatalf("%s: %v", server, err)
		}
		if want := "POST " + nodecreds.Path + " application/json " + req; got.Load() != want {
			t.Errorf("broker got %q, want %q", got.Load(), want)
		}
		var resp credentialproviderv1.CredentialProviderResponse
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("stdout is not JSON: %v: %q", err, out)
		}
		if resp.CacheKeyType != "Image" || resp.CacheDuration.Duration != time.Minute || resp.Auth["registry.example.com"].Password != "p" {
			t.Errorf("stdout %q", out)
		}
	}
}

// TestRunConfigDir: without --server the plugin reads the node agent's
// files; the server name verifies a certificate issued for the Service
// name while the address is an IP.
func TestRunConfigDir(t *testing.T) {
	const svc = "regcred-webhook.regcred-system.svc"
	srv, ca := broker(t, answer(goodAnswer), svc)
	caPEM, _ := os.ReadFile(ca)
	write := func(dir, name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	full := t.TempDir()
	write(full, nodecreds.ServerFile, srv.URL+"\n")
	write(full, nodecreds.ServerNameFile, svc+"\n")
	write(full, nodecreds.CAFile, string(caPEM))
	noName := t.TempDir()
	write(noName, nodecreds.ServerFile, srv.URL)
	write(noName, nodecreds.CAFile, string(caPEM))
	noServer := t.TempDir()
	write(noServer, nodecreds.CAFile, string(caPEM))
	noCA := t.TempDir()
	write(noCA, nodecreds.ServerFile, srv.URL)
	emptyServer := t.TempDir()
	write(emptyServer, nodecreds.ServerFile, "\n")
	badServer := t.TempDir()
	write(badServer, nodecreds.ServerFile, "http://10.0.0.1")
	write(badServer, nodecreds.CAFile, string(caPEM))

	for _, tc := range []struct {
		name, dir, serverName, wantErr string
	}{
		{"all files", full, "", ""},
		{"server name flag wins over no file", noName, svc, ""},
		{"no server name: the IP is not in the certificate", noName, "", "certificate is not valid for 127.0.0.1"},
		{"missing server file", noServer, "", "no broker address: " + filepath.Join(noServer, "server") + " does not exist"},
		{"empty server file", emptyServer, "", "is empty"},
		{"missing CA file", noCA, "", "read the broker's CA: " + filepath.Join(noCA, "ca.crt") + ": no such file or directory"},
		{"not https", badServer, "", `broker address "http://10.0.0.1" is not an https://HOST[:PORT] URL`},
		{"missing dir", filepath.Join(full, "nope"), "", "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runPlugin(t, strings.NewReader(request("registry.example.com/app", token)), Options{ConfigDir: tc.dir, ServerName: tc.serverName})
			if tc.wantErr == "" {
				if err != nil || !strings.Contains(out, "CredentialProviderResponse") {
					t.Fatalf("err %v, out %q", err, out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestRunFailures(t *testing.T) {
	good, goodCA := broker(t, answer(goodAnswer))
	other, err := testserver.StartTLS(http.NotFoundHandler(), nil, "other-ca")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	otherCA := filepath.Join(t.TempDir(), "other.crt")
	if err := os.WriteFile(otherCA, other.CA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A port nobody listens on: bound, then closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "https://" + l.Addr().String()
	_ = l.Close()

	var flooded atomic.Int64
	stub := func(h http.HandlerFunc) string {
		srv, ca := broker(t, h)
		_ = goodCA
		return srv.URL + " " + ca
	}
	for _, tc := range []struct {
		name    string
		broker  string // "URL CAFILE"
		stdin   string
		wantErr string
	}{
		{"wrong CA", good.URL + " " + otherCA, "", "regcred broker at " + good.URL + ": certificate not signed by the CA in " + otherCA},
		{"CA file not PEM", good.URL + " " + notPEM, "", "holds no PEM certificate"},
		{"server down", down + " " + goodCA, "", "regcred broker at " + down + ": connection refused"},
		{"403 with reason", stub(reject(403, "pod web-1 does not run on node n1\nsecond line")), "", "regcred broker refused: 403 pod web-1 does not run on node n1"},
		{"401 reason sanitized", stub(reject(401, "bad token "+token+" \x1b[31mred\x07")), "", "regcred broker refused: 401 bad token [redacted] [31mred"},
		{"429 without reason", stub(reject(429, "")), "", "regcred broker refused: 429 Too Many Requests"},
		{"503", stub(reject(503, "not ready")), "", "regcred broker failed: 503 not ready"},
		{"long reason cut", stub(reject(403, strings.Repeat("x", 300))), "", "403 " + strings.Repeat("x", 200)},
		{"oversized answer", stub(func(w http.ResponseWriter, r *http.Request) { testserver.Flood(w, r, 200, "{", &flooded) }), "", "the answer is larger than 64 KiB"},
		{"garbage answer", stub(answer("<html>password=hunter2</html>")), "", "answer is not a CredentialProviderResponse: invalid JSON at byte 1"},
		{"empty answer", stub(answer("")), "", "answer is not a CredentialProviderResponse: empty or truncated JSON"},
		{"wrong kind", stub(answer(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"Nope","cacheKeyType":"Image"}`)), "", `answer has kind "Nope"`},
		{"wrong apiVersion", stub(answer(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","kind":"CredentialProviderResponse","cacheKeyType":"Image"}`)), "", `answer has apiVersion "credentialprovider.kubelet.k8s.io/v1beta1"`},
		{"no cacheKeyType", stub(answer(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse"}`)), "", `answer has cacheKeyType ""`},
		{"token echoed", stub(answer(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image","auth":{"r.io":{"username":"u","password":"` + token + `"}}}`)), "", "returns the ServiceAccount token as a password"},
		{"request not JSON", good.URL + " " + goodCA, "{", "the request on stdin is not a CredentialProviderRequest: empty or truncated JSON"},
		{"request wrong apiVersion", good.URL + " " + goodCA, `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1alpha1","kind":"CredentialProviderRequest","image":"r.io/a","serviceAccountToken":"t"}`, `apiVersion "credentialprovider.kubelet.k8s.io/v1alpha1", want "credentialprovider.kubelet.k8s.io/v1"`},
		{"request wrong kind", good.URL + " " + goodCA, `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"X","image":"r.io/a","serviceAccountToken":"t"}`, `kind "X"`},
		{"request without image", good.URL + " " + goodCA, request("", token), "names no image"},
		{"request without token", good.URL + " " + goodCA, request("r.io/a", ""), "carries no serviceAccountToken: give the provider tokenAttributes"},
		{"request too large", good.URL + " " + goodCA, request(strings.Repeat("a", nodecreds.MaxBody), token), "the request on stdin is larger than 64 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, ca, _ := strings.Cut(tc.broker, " ")
			stdin := tc.stdin
			if stdin == "" {
				stdin = request("registry.example.com/app", token)
			}
			_, err := runPlugin(t, strings.NewReader(stdin), Options{Server: server, CAFile: ca})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error quotes the answer: %v", err)
			}
		})
	}
}

// TestRunTimeout: a broker that never answers and a stdin that never
// closes both end within the timeout.
func TestRunTimeout(t *testing.T) {
	release := make(chan struct{})
	srv, ca := broker(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	hang, _ := io.Pipe()
	t.Cleanup(func() { _ = hang.Close() })
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name    string
		stdin   io.Reader
		wantErr string
	}{
		{"broker never answers", strings.NewReader(request("r.io/a", token)), "regcred broker at " + srv.URL + ": no answer within 300ms"},
		{"stdin never closes", hang, "the request on stdin did not arrive within 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := runPlugin(t, tc.stdin, Options{Server: srv.URL, CAFile: ca, Timeout: timeout})
			if elapsed := time.Since(start); elapsed > timeout+2*time.Second {
				t.Errorf("returned after %s, timeout %s", elapsed, timeout)
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestRunNoRedirect: a redirect is not followed, so the token never goes
// to another address.
func TestRunNoRedirect(t *testing.T) {
	var hits atomic.Int32
	elsewhere, _ := broker(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	srv, ca := broker(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+nodecreds.Path, http.StatusTemporaryRedirect)
	})
	_, err := runPlugin(t, strings.NewReader(request("r.io/a", token)), Options{Server: srv.URL, CAFile: ca})
	if err == nil || !strings.Contains(err.Error(), "refused: 307") {
		t.Fatalf("error %v", err)
	}
	if hits.Load() != 0 {
		t.Error("the redirect was followed")
	}
}
