// Package registry talks to container registries the way a pull does and
// classifies the outcome into a small closed set of reasons a person can act
// on. It never logs, and no credential reaches a Result.
package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"regcred.dev/regcred/internal/egress"
	"regcred.dev/regcred/internal/redact"
)

// Reason classifies the outcome of a check.
type Reason string

// The closed set of reasons.
const (
	OK           Reason = "OK"
	Unauthorized Reason = "Unauthorized"
	Denied       Reason = "Denied"
	NotFound     Reason = "NotFound"
	RateLimited  Reason = "RateLimited"
	TLS          Reason = "TLS"
	DNS          Reason = "DNS"
	Connection   Reason = "Connection"
	Timeout      Reason = "Timeout"
	// Blocked: the address is in a range the manager may not reach for
	// the credential (a tenant's probe of loopback, link-local or a
	// private network).
	Blocked Reason = "Blocked"
	Other   Reason = "Other"
)

// Reasons lists every Reason, in a stable order.
var Reasons = []Reason{OK, Unauthorized, Denied, NotFound, RateLimited, TLS, DNS, Connection, Timeout, Blocked, Other}

// Hint is a one-line suggestion for a person.
func (r Reason) Hint() string {
	switch r {
	case OK:
		return "the registry accepted the request; a pull with this credential would start"
	case Unauthorized:
		return "the registry rejected the request (401): check the username and password or token, that it has not expired, and that it may pull this repository"
	case Denied:
		return "the credential was accepted but may not pull this repository (403): grant it pull access or use another credential"
	case NotFound:
		return "the repository or tag does not exist (404): check the image name and tag, or push the image"
	case RateLimited:
		return "the registry is rate-limiting pulls (429): authenticate, wait for the window to reset, or pull through a mirror"
	case TLS:
		return "the TLS handshake failed: the registry's certificate is not trusted or does not match its name; install its CA on the nodes (containerd certs.d) or fix the certificate"
	case DNS:
		return "the registry host name does not resolve: check the spelling, DNS, and any mirror rule"
	case Connection:
		return "the registry could not be reached: check that it is up and the port is right, and firewalls, proxies and network policies"
	case Timeout:
		return "the registry did not answer in time: check network reachability and proxies, or retry"
	case Blocked:
		return "probe a registry on a public address, or ask the cluster admin to allow its network (--tenant-allow-private-networks)"
	default:
		return "unexpected answer from the registry: see the message"
	}
}

// RateLimit is what a registry said about its pull rate limit (Docker Hub's
// ratelimit-limit and ratelimit-remaining headers).
type RateLimit struct {
	Limit     int    `json:"limit"`
	Remaining int    `json:"remaining"`
	Window    string `json:"window,omitempty"`
}

// Result is the outcome of a check.
type Result struct {
	Reason     Reason     `json:"reason"`
	HTTPStatus int        `json:"httpStatus,omitempty"`
	Message    string     `json:"message"`
	Hint       string     `json:"hint"`
	Digest     string     `json:"digest,omitempty"`
	RateLimit  *RateLimit `json:"rateLimit,omitempty"`
}

// Option configures Check, Copy and Mirror.
type Option func(*options)

type options struct {
	transport http.RoundTripper
	rootCAs   *x509.CertPool
	timeout   time.Duration
	insecure  bool
	// Try: plain HTTP per candidate, from its key's scheme.
	insecureFromKey bool
	guard           *egress.Guard
	userAgent       string
	// Copy and Mirror.
	keychain    authn.Keychain
	progress    chan<- v1.Update
	jobs        int
	concurrency int
	observer    MirrorObserver
}

func newOptions(opts []Option) *options {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithKeychain picks the credentials of Copy and Mirror per repository.
func WithKeychain(kc authn.Keychain) Option { return func(o *options) { o.keychain = kc } }

// WithProgress receives a Copy's upload byte counts; Copy closes it when it
// returns.
func WithProgress(ch chan<- v1.Update) Option { return func(o *options) { o.progress = ch } }

// WithJobs is the number of blobs a Copy uploads at once.
func WithJobs(n int) Option { return func(o *options) { o.jobs = n } }

// WithConcurrency is the number of images Mirror copies at once (default 4).
func WithConcurrency(n int) Option { return func(o *options) { o.concurrency = n } }

// WithObserver hears of each image Mirror starts and finishes.
func WithObserver(obs MirrorObserver) Option { return func(o *options) { o.observer = obs } }

// WithTransport sets the base HTTP transport (TLS settings, proxies).
func WithTransport(t http.RoundTripper) Option { return func(o *options) { o.transport = t } }

// WithRootCAs trusts these CAs instead of the system pool.
func WithRootCAs(pool *x509.CertPool) Option { return func(o *options) { o.rootCAs = pool } }

// WithTimeout bounds the whole check (ping, token, manifest). Default 20s.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithInsecure allows plain HTTP, for registries a node is configured to
// reach without TLS.
func WithInsecure(insecure bool) Option { return func(o *options) { o.insecure = insecure } }

// WithInsecureFromKey makes Try allow plain HTTP for exactly the
// candidates whose own registry key says http://, overriding WithInsecure:
// a credential written for an https registry is never sent in the clear.
// Try only.
func WithInsecureFromKey() Option { return func(o *options) { o.insecureFromKey = true } }

// WithGuard refuses connections to loopback, link-local and private
// addresses, checked on the address dialled, except what guard allows.
// Check only: for probes of targets a tenant chose.
func WithGuard(guard *egress.Guard) Option { return func(o *options) { o.guard = guard } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

// Credential is what to present to the registry. The zero value is
// anonymous.
type Credential struct {
	Username      string
	Password      string
	IdentityToken string
}

func (c Credential) authenticator() authn.Authenticator {
	switch {
	case c.IdentityToken != "":
		return authn.FromConfig(authn.AuthConfig{Username: c.Username, IdentityToken: c.IdentityToken})
	case c.Username != "" || c.Password != "":
		return &authn.Basic{Username: c.Username, Password: c.Password}
	default:
		return authn.Anonymous
	}
}

func (c Credential) secrets() []redact.Secret {
	return []redact.Secret{{Username: c.Username, Password: c.Password}, {Username: c.Username, Password: c.IdentityToken}}
}

// Check authenticates to the registry of image the way a pull does — ping
// /v2/, follow the WWW-Authenticate challenge (basic, or a bearer token with
// repository:NAME:pull scope), then HEAD the manifest — and classifies what
// happened.
func Check(ctx context.Context, image string, cred Credential, opts ...Option) Result {
	o := options{timeout: 20 * time.Second, userAgent: "regcred"}
	for _, opt := range opts {
		opt(&o)
	}
	var nameOpts []name.Option
	if o.insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	ref, err := name.ParseReference(image, nameOpts...)
	if err != nil {
		return Result{Reason: Other, Message: fmt.Sprintf("invalid image reference %q: %v", image, err), Hint: "fix the image reference"}
	}

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	rec := &recorder{inner: o.checkTransport(), registryHost: ref.Context().RegistryStr()}
	desc, err := remote.Head(ref,
		remote.WithContext(ctx),
		remote.WithAuth(cred.authenticator()),
		remote.WithTransport(rec),
		remote.WithUserAgent(o.userAgent),
		// One attempt: a check reports what happened, it does not retry
		// through it (and a retried 429 only digs the hole deeper).
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithRetryStatusCodes(),
		remote.WithRetryPredicate(func(error) bool { return false }),
	)
	res := classify(ctx, err, o.insecure)
	res.RateLimit = rec.rateLimit()
	if err == nil {
		res.Digest = desc.Digest.String()
		res.Message = fmt.Sprintf("manifest %s found", desc.Digest)
	}
	if res.Hint == "" {
		res.Hint = res.Reason.Hint()
	}
	res.Message = redact.Message(res.Message, cred.secrets()...)
	return res
}

// checkTransport is the base transport behind egress's: answers capped at
// egress.MaxBody, plain HTTP only for an insecure registry, redirects only
// to the same host, and the guard if there is one. Copy and Mirror move
// blobs and keep the base transport.
func (o *options) checkTransport() http.RoundTripper {
	return egress.Transport(o.baseTransport(), egress.Policy{AllowHTTP: o.insecure, Guard: o.guard})
}

func (o *options) baseTransport() http.RoundTripper {
	if o.transport != nil {
		return o.transport
	}
	return Transport(o.rootCAs)
}

// classify maps an error chain to a Result. go-containerregistry falls back
// to plain HTTP for loopback and private-network registries and joins both
// attempts' errors; unless the registry is configured as insecure, the
// HTTPS attempt's network or TLS failure is the one that matters, so it is
// looked for first.
func classify(ctx context.Context, err error, insecure bool) Result {
	if err == nil {
		return Result{Reason: OK}
	}
	msg := err.Error()
	if res, ok := classifyEgress(err); ok {
		return res
	}
	if !insecure {
		if res, ok := classifyNetwork(ctx, err, msg); ok {
			return res
		}
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		res := Result{HTTPStatus: terr.StatusCode, Message: statusMessage(terr)}
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.DeniedErrorCode:
				res.Reason = Denied
			case transport.NameUnknownErrorCode, transport.ManifestUnknownErrorCode:
				res.Reason = NotFound
			case transport.TooManyRequestsErrorCode:
				res.Reason = RateLimited
			}
		}
		if res.Reason == "" {
			switch terr.StatusCode {
			case http.StatusUnauthorized:
				res.Reason = Unauthorized
			case http.StatusForbidden:
				res.Reason = Denied
			case http.StatusNotFound:
				res.Reason = NotFound
			case http.StatusTooManyRequests:
				res.Reason = RateLimited
			default:
				res.Reason = Other
			}
		}
		if res.Reason == Unauthorized && terr.Request != nil {
			res.Hint = unauthorizedHint(terr.Request.URL)
		}
		return res
	}
	if res, ok := classifyNetwork(ctx, err, msg); ok {
		return res
	}
	return Result{Reason: Other, Message: msg}
}

func classifyNetwork(ctx context.Context, err error, msg string) (Result, bool) {
	var (
		dnsErr     *net.DNSError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		verifyErr  *tls.CertificateVerificationError
		recordErr  tls.RecordHeaderError
		alertErr   tls.AlertError
		netErr     net.Error
		opErr      *net.OpError
	)
	const plainHTTPHint = "the server does not speak TLS on this port: is it a plain-HTTP registry (configure the nodes for it, and use --insecure here) or the wrong port?"
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return Result{Reason: Timeout, Message: msg}, true
	case errors.As(err, &dnsErr):
		return Result{Reason: DNS, Message: msg}, true
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidErr),
		errors.As(err, &verifyErr), errors.As(err, &alertErr):
		return Result{Reason: TLS, Message: msg}, true
	case errors.As(err, &recordErr), strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return Result{Reason: TLS, Message: msg, Hint: plainHTTPHint}, true
	case errors.As(err, &netErr) && netErr.Timeout():
		return Result{Reason: Timeout, Message: msg}, true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return Result{Reason: Connection, Message: msg}, true
	case errors.As(err, &opErr):
		return Result{Reason: Connection, Message: msg}, true
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "tls: "):
		return Result{Reason: TLS, Message: msg}, true
	default:
		return Result{}, false
	}
}

func unauthorizedHint(u *url.URL) string {
	if u != nil && !strings.HasPrefix(u.Path, "/v2/") && u.Path != "/v2" {
		return "the token service " + u.Host + u.Path + " rejected the username and password or token: check them and that they have not expired"
	}
	return "the registry refused access (401): the credential is wrong or expired, or it may not pull this repository (many registries also answer 401 for repositories that do not exist)"
}

// recorder remembers the rate-limit headers of registry responses.
type recorder struct {
	inner        http.RoundTripper
	registryHost string

	mu sync.Mutex
	rl *RateLimit
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.inner.RoundTrip(req)
	if err != nil || resp == nil {
		return resp, err
	}
	if rl := parseRateLimit(resp.Header); rl != nil {
		r.mu.Lock()
		r.rl = rl
		r.mu.Unlock()
	}
	return resp, nil
}

func (r *recorder) rateLimit() *RateLimit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rl
}

// parseRateLimit reads "ratelimit-limit: 100;w=21600" and
// "ratelimit-remaining: 76;w=21600".
func parseRateLimit(h http.Header) *RateLimit {
	rem := h.Get("RateLimit-Remaining")
	if rem == "" {
		return nil
	}
	remaining, window, ok := parseRateValue(rem)
	if !ok {
		return nil
	}
	rl := &RateLimit{Remaining: remaining, Limit: -1, Window: window}
	if limit, _, ok := parseRateValue(h.Get("RateLimit-Limit")); ok {
		rl.Limit = limit
	}
	return rl
}

func parseRateValue(v string) (n int, window string, ok bool) {
	num, params, _ := strings.Cut(v, ";")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil {
		return 0, "", false
	}
	for _, p := range strings.Split(params, ";") {
		if k, val, found := strings.Cut(strings.TrimSpace(p), "="); found && k == "w" {
			if secs, err := strconv.Atoi(val); err == nil {
				window = (time.Duration(secs) * time.Second).String()
			}
		}
	}
	return n, window, true
}

// classifyEgress reports what egress refused, by class only. A refused
// address is reported before anything else: the plain-HTTP fallback of
// go-containerregistry is joined to it, and neither says more than that.
func classifyEgress(err error) (Result, bool) {
	var big *egress.BodyTooLargeError
	switch {
	case errors.Is(err, egress.ErrBlocked):
		return Result{Reason: Blocked, Message: egress.ErrBlocked.Error()}, true
	case errors.As(err, &big):
		return Result{Reason: Other, HTTPStatus: big.StatusCode, Message: big.Error()}, true
	case errors.Is(err, egress.ErrRedirect):
		return Result{Reason: Other, Message: egress.ErrRedirect.Error()}, true
	}
	return Result{}, false
}

// statusMessage says what a registry answered — status, where, and the
// error codes of the registry API — without its text: a body is the
// server's to write, so none of it is copied verbatim into a condition.
func statusMessage(terr *transport.Error) string {
	msg := fmt.Sprintf("HTTP %d %s", terr.StatusCode, http.StatusText(terr.StatusCode))
	if r := terr.Request; r != nil && r.URL != nil {
		msg += " from " + r.URL.Host + r.URL.Path
	}
	var codes []string
	for _, d := range terr.Errors {
		if c := string(d.Code); isErrorCode(c) && !slices.Contains(codes, c) {
			codes = append(codes, c)
		}
	}
	if len(codes) > 0 {
		msg += " (" + strings.Join(codes, ", ") + ")"
	}
	return msg
}

// isErrorCode: registry API error codes are short upper-case words.
func isErrorCode(c string) bool {
	if c == "" || len(c) > 32 {
		return false
	}
	for _, r := range c {
		if (r < 'A' || r > 'Z') && r != '_' {
			return false
		}
	}
	return true
}
