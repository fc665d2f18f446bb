package cli

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"sigs.k8s.io/yaml"

	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/testenv/testserver"
)

const kubeletTestToken = "eyJhbGciOiJSUzI1NiJ9.PLUGIN-TEST-TOKEN.sig"

func kubeletRequest(image string) string {
	return `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"` + image + `","serviceAccountToken":"` + kubeletTestToken + `","serviceAccountAnnotations":{"a":"b"}}`
}

// TestKubeletCredentialProviderEndToEnd runs the plugin command as the
// kubelet does (stdin in, stdout out) against a TLS broker stub whose
// certificate names only the Service, reached by IP.
func TestKubeletCredentialProviderEndToEnd(t *testing.T) {
	const svc = "regcred-webhook.regcred-system.svc"
	var status atomic.Int32
	status.Store(200)
	var gotBody atomic.Value
	srv, err := testserver.StartTLS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != nodecreds.Path {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		gotBody.Store(string(b))
		if s := int(status.Load()); s != 200 {
			w.WriteHeader(s)
			_, _ = io.WriteString(w, "pod team-a/web-1 does not use ServiceAccount builder\n")
			return
		}
		_, _ = io.WriteString(w, `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image","cacheDuration":"1m0s","auth":{"registry.example.com":{"username":"robot","password":"pw"}}}`)
	}), nil, "broker-ca", svc)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	dir := t.TempDir()
	writeFile(t, dir, nodecreds.ServerFile, srv.URL+"\n")
	writeFile(t, dir, nodecreds.ServerNameFile, svc+"\n")
	caFile := writeFile(t, dir, nodecreds.CAFile, string(srv.CA.CertPEM))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "https://" + l.Addr().String()
	_ = l.Close()

	for _, tc := range []struct {
		name     string
		args     []string
		status   int
		wantCode int
		wantErr  string
	}{
		{"config dir", []string{"--config-dir", dir}, 200, 0, ""},
		{"flags", []string{"--server", srv.URL, "--server-name", svc, "--ca-file", caFile}, 200, 0, ""},
		{"refused", []string{"--config-dir", dir}, 403, 1, "Error: regcred broker refused: 403 pod team-a/web-1 does not use ServiceAccount builder\n"},
		{"broker down", []string{"--server", down, "--ca-file", caFile}, 200, 1, "Error: regcred broker at " + down + ": connection refused\n"},
		{"no server name", []string{"--server", srv.URL, "--ca-file", caFile}, 200, 1, "Error: regcred broker at " + srv.URL + ": certificate is not valid for 127.0.0.1 (set the server name)\n"},
		{"no node agent files", []string{"--config-dir", filepath.Join(dir, "missing")}, 200, 1, "does not exist (is the regcred node agent running on this node, or give --server)\n"},
		{"bad timeout", []string{"--config-dir", dir, "--timeout", "0s"}, 200, 2, "--timeout must be positive"},
		{"argument", []string{"extra"}, 200, 2, "takes no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status.Store(int32(tc.status))
			gotBody.Store("")
			req := kubeletRequest("registry.example.com/team/app:1")
			stdout, stderr, code := run(t, req, append([]string{nodecreds.PluginCommand}, tc.args...)...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.wantCode, stderr)
			}
			if strings.Contains(stdout+stderr, "PLUGIN-TEST-TOKEN") {
				t.Errorf("the token leaked: stdout %q stderr %q", stdout, stderr)
			}
			if tc.wantCode != 0 {
				if stdout != "" {
					t.Errorf("failure wrote stdout %q", stdout)
				}
				if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.wantErr) {
					t.Errorf("stderr %q, want one line with %q", stderr, tc.wantErr)
				}
				return
			}
			if stderr != "" {
				t.Errorf("stderr %q", stderr)
			}
			if gotBody.Load() != req {
				t.Errorf("broker got %q, want the kubelet's request verbatim", gotBody.Load())
			}
			var resp credentialproviderv1.CredentialProviderResponse
			if err := json.Unmarshal([]byte(stdout), &resp); err != nil {
				t.Fatalf("stdout is not JSON: %v: %q", err, stdout)
			}
			if resp.Kind != "CredentialProviderResponse" || resp.Auth["registry.example.com"].Username != "robot" {
				t.Errorf("stdout %q", stdout)
			}
		})
	}
}

func TestKubeletConfig(t *testing.T) {
	stdout, stderr, code := run(t, "", "kubelet-config", "--match-image", "registry.example.com", "--match-image", "*.example.org:5000/team", "--config-dir", "/opt/regcred/nc")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var cfg kubeletconfigv1.CredentialProviderConfig
	if err := yaml.UnmarshalStrict([]byte(stdout), &cfg); err != nil {
		t.Fatalf("output is not a CredentialProviderConfig: %v\n%s", err, stdout)
	}
	p := cfg.Providers[0]
	if p.Name != nodecreds.PluginName || strings.Join(p.Args, " ") != "kubelet-credential-provider --config-dir /opt/regcred/nc" ||
		p.TokenAttributes.ServiceAccountTokenAudience != "regcred.dev" || p.TokenAttributes.CacheType != "ServiceAccount" || !*p.TokenAttributes.RequireServiceAccount ||
		strings.Join(p.MatchImages, ",") != "registry.example.com,*.example.org:5000/team" {
		t.Errorf("provider %+v", p)
	}
	if !strings.Contains(stdout, "#   --image-credential-provider-config=/etc/kubernetes/image-credential-provider-config.yaml --image-credential-provider-bin-dir=/var/lib/regcred/bin\n") {
		t.Errorf("no flags comment:\n%s", stdout)
	}

	stdout, _, code = run(t, "", "kubelet-config", "--match-image", "r.io", "--format", "flags", "--bin-dir", "/etc/eks/image-credential-provider", "--config-file", "/etc/eks/credential-providers")
	if code != 0 || stdout != "--image-credential-provider-config=/etc/eks/credential-providers --image-credential-provider-bin-dir=/etc/eks/image-credential-provider\n" {
		t.Errorf("flags: exit %d, %q", code, stdout)
	}
	stdout, _, code = run(t, "", "kubelet-config", "--match-image", "r.io", "--format", "yaml", "--audience", "other.example", "--cache-duration", "30s")
	if code != 0 || strings.Contains(stdout, "#") || !strings.Contains(stdout, "serviceAccountTokenAudience: other.example") || !strings.Contains(stdout, "defaultCacheDuration: 30s") {
		t.Errorf("yaml: exit %d, %q", code, stdout)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no match image", nil, "--match-image is required"},
		{"scheme", []string{"--match-image", "https://r.io"}, "has a scheme"},
		{"glob in port", []string{"--match-image", "r.io:*"}, "invalid port"},
		{"bad format", []string{"--match-image", "r.io", "--format", "json"}, `unknown --format "json"`},
		{"zero cache", []string{"--match-image", "r.io", "--cache-duration", "0s"}, "--cache-duration must be positive"},
		{"relative config dir", []string{"--match-image", "r.io", "--config-dir", "nc"}, "must be an absolute path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, "", append([]string{"kubelet-config"}, tc.args...)...)
			if code != exitUsage || stdout != "" || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stdout %q, stderr %q, want %q", code, stdout, stderr, tc.want)
			}
		})
	}

	help, _, _ := run(t, "", "kubelet-config", "--help")
	for _, want := range []string{"kubeadm", "kubeletExtraArgs", "EKS", "spec.kubelet.flags", "k3s", "RKE2", "kubelet-arg", "request-serviceaccounts-token-audience"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
}

func TestNodeAgentOnce(t *testing.T) {
	root := t.TempDir()
	plugins := filepath.Join(root, "plugins")
	source := filepath.Join(root, "configmap")
	config := filepath.Join(root, "node-credentials")
	for _, d := range []string{plugins, source} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := testserver.StartTLS(http.NotFoundHandler(), nil, "ca")
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	writeFile(t, source, nodecreds.CAFile, string(srv.CA.CertPEM))
	writeFile(t, source, nodecreds.ServerNameFile, "regcred-webhook.regcred-system.svc\n")

	_, stderr, code := run(t, "", "node-agent", "--once", "--plugin-dir", plugins, "--config-dir", config, "--source-dir", source, "--server", "https://10.96.0.12:443")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	fi, err := os.Stat(filepath.Join(plugins, nodecreds.PluginName))
	if err != nil || fi.Mode().Perm() != 0o755 || fi.Size() == 0 {
		t.Fatalf("plugin not installed: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(config, nodecreds.ServerFile)); string(b) != "https://10.96.0.12:443\n" {
		t.Errorf("server file %q", b)
	}
	if !strings.Contains(stderr, "installed "+filepath.Join(plugins, nodecreds.PluginName)) {
		t.Errorf("stderr %q", stderr)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no plugin dir", []string{"--server", "https://10.0.0.1"}, exitUsage, "--plugin-dir is required"},
		{"no server", []string{"--plugin-dir", plugins}, exitUsage, "give exactly one of --server or --service-env"},
		{"zero interval", []string{"--plugin-dir", plugins, "--server", "https://10.0.0.1", "--interval", "0s"}, exitUsage, "--interval must be positive"},
		{"unset service env", []string{"--once", "--plugin-dir", plugins, "--config-dir", config, "--source-dir", source, "--service-env", "REGCRED_NOPE_XYZ"}, exitFailure, "REGCRED_NOPE_XYZ_SERVICE_HOST and REGCRED_NOPE_XYZ_SERVICE_PORT are not both set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := run(t, "", append([]string{"node-agent"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q, want %d %q", code, stderr, tc.code, tc.want)
			}
		})
	}
}
