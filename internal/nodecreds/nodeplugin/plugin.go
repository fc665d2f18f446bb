// Package nodeplugin is the kubelet's image credential provider exec plugin
// (`regcred kubelet-credential-provider`): the kubelet writes a
// CredentialProviderRequest carrying the Pod's ServiceAccount token on its
// stdin, the plugin forwards it to regcred's broker over HTTPS and writes
// the broker's CredentialProviderResponse on its stdout.
//
// The kubelet logs the plugin's stderr with the failed pull, so every
// failure is one line that names what broke, and nothing reaches stdout
// unless the whole answer was read and checked: a half-written answer is
// worse than none. The token is a credential; no error carries it.
package nodeplugin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"

	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/version"
)

// DefaultTimeout bounds the whole call. The kubelet kills a plugin after a
// minute and retries the pull with back-off; failing well before that
// leaves the reason in the kubelet's log instead of a "signal: killed".
const DefaultTimeout = 10 * time.Second

// maxReason bounds the broker's reason as the plugin repeats it.
const maxReason = 200

// Options say where the broker is and how to trust it.
type Options struct {
	// Server is the broker's base URL (https://host:port); nodecreds.Path
	// is appended. Empty: read it, the server name and the CA from
	// ConfigDir, as the node agent writes them.
	Server string
	// ServerName is the TLS server name to verify when Server is an IP.
	ServerName string
	// CAFile is a PEM bundle that verifies the broker. Empty with Server
	// set: the system roots.
	CAFile string
	// ConfigDir is the node agent's directory (default
	// nodecreds.DefaultConfigDir); read only when Server is empty. Explicit
	// ServerName and CAFile still win over its files.
	ConfigDir string
	// Timeout bounds the whole call, stdin included (default
	// DefaultTimeout).
	Timeout time.Duration
	// HTTPClient replaces the client built from the CA and server name
	// (tests).
	HTTPClient *http.Client
}

// Run reads one CredentialProviderRequest from in, asks the broker and
// writes its CredentialProviderResponse to out. On error nothing has been
// written to out and the error is one line for the kubelet's log.
func Run(ctx context.Context, in io.Reader, out io.Writer, opts Options) error {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	body, err := readBounded(ctx, in, "the request on stdin", timeout)
	if err != nil {
		return err
	}
	req, err := ParseRequest(body)
	if err != nil {
		return err
	}
	target, err := opts.resolve()
	if err != nil {
		return err
	}
	client := opts.HTTPClient
	if client == nil {
		if client, err = target.client(); err != nil {
			return err
		}
	}
	answer, err := post(ctx, client, target, body, timeout, req.ServiceAccountToken)
	if err != nil {
		return err
	}
	resp, err := ValidateResponse(answer, req.ServiceAccountToken)
	if err != nil {
		return fmt.Errorf("regcred broker at %s: %w", target.display, err)
	}
	// Re-encoded, so that what the kubelet reads is exactly what was
	// checked, in one write.
	b, err := json.Marshal(resp)
	if err != nil {
		return fmt.Errorf("encode the answer: %w", err)
	}
	_, err = out.Write(append(b, '\n'))
	return err
}

// ParseRequest checks what the kubelet wrote on stdin. A request without a
// ServiceAccount token means the kubelet's provider lacks tokenAttributes:
// the broker could only refuse it, so the plugin says what to fix.
func ParseRequest(body []byte) (*credentialproviderv1.CredentialProviderRequest, error) {
	var req credentialproviderv1.CredentialProviderRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("the request on stdin is not a CredentialProviderRequest: %s", jsonReason(err))
	}
	if want := credentialproviderv1.SchemeGroupVersion.String(); req.APIVersion != want {
		return nil, fmt.Errorf("the request on stdin has apiVersion %q, want %q: set apiVersion: %s in the kubelet's CredentialProviderConfig", printable(req.APIVersion, 64, ""), want, want)
	}
	if req.Kind != "CredentialProviderRequest" {
		return nil, fmt.Errorf("the request on stdin has kind %q, want CredentialProviderRequest", printable(req.Kind, 64, ""))
	}
	if strings.TrimSpace(req.Image) == "" {
		return nil, errors.New("the request on stdin names no image")
	}
	if req.ServiceAccountToken == "" {
		return nil, errors.New("the request on stdin carries no serviceAccountToken: give the provider tokenAttributes with requireServiceAccount: true (see regcred kubelet-config)")
	}
	return &req, nil
}

// ValidateResponse checks the broker's answer as the kubelet will, so that
// a broken answer fails here with a reason instead of in the kubelet's
// decoder. Errors never quote the answer: it holds passwords.
func ValidateResponse(body []byte, token string) (*credentialproviderv1.CredentialProviderResponse, error) {
	var resp credentialproviderv1.CredentialProviderResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("answer is not a CredentialProviderResponse: %s", jsonReason(err))
	}
	if want := credentialproviderv1.SchemeGroupVersion.String(); resp.APIVersion != want {
		return nil, fmt.Errorf("answer has apiVersion %q, want %q", printable(resp.APIVersion, 64, token), want)
	}
	if resp.Kind != "CredentialProviderResponse" {
		return nil, fmt.Errorf("answer has kind %q, want CredentialProviderResponse", printable(resp.Kind, 64, token))
	}
	// Only Image: regcred's broker answers for one image, and a Registry or
	// Global key would let the kubelet reuse the answer for images the
	// broker never judged.
	if resp.CacheKeyType != credentialproviderv1.ImagePluginCacheKeyType {
		return nil, fmt.Errorf("answer has cacheKeyType %q, want Image", printable(string(resp.CacheKeyType), 64, token))
	}
	if resp.CacheDuration != nil && resp.CacheDuration.Duration < 0 {
		return nil, errors.New("answer has a negative cacheDuration")
	}
	for key, auth := range resp.Auth {
		if strings.TrimSpace(key) == "" {
			return nil, errors.New("answer has an auth entry with an empty registry key")
		}
		// The kubelet refuses this with cacheType ServiceAccount; a broker
		// that echoes the token is broken, say so here.
		if token != "" && auth.Password == token {
			return nil, errors.New("answer returns the ServiceAccount token as a password")
		}
	}
	return &resp, nil
}

// target is the broker endpoint and its trust.
type target struct {
	url        string // base + nodecreds.Path
	display    string // base, for errors
	serverName string
	caFile     string
	ca         []byte
}

func (o *Options) resolve() (*target, error) {
	t := &target{serverName: o.ServerName, caFile: o.CAFile}
	server := o.Server
	if server == "" {
		dir := o.ConfigDir
		if dir == "" {
			dir = nodecreds.DefaultConfigDir
		}
		s, err := readConfigFile(dir, nodecreds.ServerFile, true)
		if err != nil {
			return nil, err
		}
		if s == "" {
			return nil, fmt.Errorf("no broker address: %s is empty (is the regcred node agent running on this node?)", filepath.Join(dir, nodecreds.ServerFile))
		}
		server = s
		if t.serverName == "" {
			if t.serverName, err = readConfigFile(dir, nodecreds.ServerNameFile, false); err != nil {
				return nil, err
			}
		}
		if t.caFile == "" {
			t.caFile = filepath.Join(dir, nodecreds.CAFile)
		}
	}
	u, err := url.Parse(strings.TrimSpace(server))
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("broker address %q is not an https://HOST[:PORT] URL", printable(server, 100, ""))
	}
	base := strings.TrimRight(u.String(), "/")
	t.display = base
	t.url = base + nodecreds.Path
	if t.caFile != "" {
		if t.ca, err = os.ReadFile(t.caFile); err != nil {
			return nil, fmt.Errorf("read the broker's CA: %s", pathErr(err))
		}
	}
	return t, nil
}

// readConfigFile reads one of the node agent's files; a missing optional
// file is empty.
func readConfigFile(dir, name string, required bool) (string, error) {
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		if !required {
			return "", nil
		}
		return "", fmt.Errorf("no broker address: %s does not exist (is the regcred node agent running on this node, or give --server)", p)
	}
	if err != nil {
		return "", fmt.Errorf("read %s", pathErr(err))
	}
	return strings.TrimSpace(string(b)), nil
}

func (t *target) client() (*http.Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.serverName}
	if t.ca != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(t.ca) {
			return nil, fmt.Errorf("the broker's CA file %s holds no PEM certificate", t.caFile)
		}
		cfg.RootCAs = pool
	}
	tr := &http.Transport{
		// No proxy: the broker is a Service inside the cluster, and a
		// node-wide HTTPS_PROXY would see the token.
		Proxy:               nil,
		DialContext:         (&net.Dialer{KeepAlive: -1}).DialContext,
		TLSClientConfig:     cfg,
		TLSHandshakeTimeout: 0, // the call's context bounds everything
		ForceAttemptHTTP2:   true,
		DisableKeepAlives:   true, // one request per process
	}
	return &http.Client{
		Transport: tr,
		// The broker never redirects; following one would send the
		// token elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

func post(ctx context.Context, client *http.Client, t *target, body []byte, timeout time.Duration, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("regcred broker at %s: %v", t.display, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", nodecreds.PluginName+"/"+version.Get().Version)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("regcred broker at %s: %s", t.display, transportReason(ctx, err, timeout, t))
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		verb := "refused"
		if resp.StatusCode >= 500 {
			verb = "failed"
		}
		msg := fmt.Sprintf("regcred broker %s: %d", verb, resp.StatusCode)
		if reason := printable(firstLine(string(b)), maxReason, token); reason != "" {
			msg += " " + reason
		} else {
			msg += " " + http.StatusText(resp.StatusCode)
		}
		return nil, errors.New(msg)
	}
	b, err := readBounded(ctx, resp.Body, "the answer", timeout)
	if err != nil {
		return nil, fmt.Errorf("regcred broker at %s: %w", t.display, err)
	}
	return b, nil
}

// readBounded reads r up to nodecreds.MaxBody bytes, giving up when ctx
// ends (a stdin the kubelet never closes must not hang the plugin).
func readBounded(ctx context.Context, r io.Reader, what string, timeout time.Duration) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(r, nodecreds.MaxBody+1))
		done <- result{b, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s did not arrive within %s", what, timeout)
			}
			return nil, fmt.Errorf("read %s: %s", what, oneLine(res.err.Error()))
		}
		if len(res.b) > nodecreds.MaxBody {
			return nil, fmt.Errorf("%s is larger than %d KiB", what, nodecreds.MaxBody>>10)
		}
		return res.b, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s did not arrive within %s", what, timeout)
	}
}

// transportReason names why the call did not get an answer, in the words
// an operator greps for.
func transportReason(ctx context.Context, err error, timeout time.Duration, t *target) string {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %s", timeout)
	}
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.As(err, &unknown):
		return fmt.Sprintf("certificate not signed by the CA in %s", orSystem(t.caFile))
	case errors.As(err, &hostname):
		return fmt.Sprintf("certificate is not valid for %s (set the server name)", printable(hostname.Host, 100, ""))
	case errors.As(err, &invalid):
		return "certificate invalid: " + oneLine(invalid.Error())
	case errors.As(err, &verify):
		return "certificate not trusted: " + oneLine(verify.Err.Error())
	case errors.As(err, &dns):
		return fmt.Sprintf("cannot resolve %s", printable(dns.Name, 100, ""))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return oneLine(err.Error())
}

func orSystem(caFile string) string {
	if caFile == "" {
		return "the system roots"
	}
	return caFile
}

// jsonReason describes a decoding failure without quoting the input.
func jsonReason(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case strings.Contains(err.Error(), "unexpected end of JSON input"):
		return "empty or truncated JSON"
	case errors.As(err, &syntax):
		return fmt.Sprintf("invalid JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q has the wrong type", typ.Field)
	}
	return "invalid JSON"
}

func pathErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return oneLine(err.Error())
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}

// printable keeps printable ASCII only, cut to max, with token removed:
// what the plugin repeats from the broker goes to the kubelet's log.
func printable(s string, max int, token string) string {
	if token != "" {
		s = strings.ReplaceAll(s, token, "[redacted]")
	}
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(b.String())
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
