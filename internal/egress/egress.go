// Package egress builds the HTTP transports regcred uses for every request
// to a registry or a token endpoint. Whoever runs the server at the other
// end may be hostile, so a transport from here bounds what an answer can
// cost (every body is capped at MaxBody), refuses plain HTTP and redirects
// to another host unless told otherwise, and can refuse, at connect time,
// addresses in loopback, link-local and private ranges (Guard).
package egress

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// MaxBody is the most regcred reads of any answer: registry errors, token
// answers and manifests' headers fit many times over.
const MaxBody = 64 << 10

// maxHeader bounds the response headers the same way.
const maxHeader = 64 << 10

// ErrBodyTooLarge is the error of a read past MaxBody. Reading stops with
// an error rather than a short body, so a cut answer is never parsed as a
// whole one.
var ErrBodyTooLarge = errors.New("the server sent more than 64 KiB")

// ErrPlainHTTP refuses an http:// request on a transport for HTTPS only.
var ErrPlainHTTP = errors.New("plain HTTP is not allowed for this registry (its registry key does not say http://)")

// ErrRedirect refuses a redirect to another host, or from HTTPS to HTTP.
var ErrRedirect = errors.New("the server redirected to another host or to plain HTTP")

// Policy says what a transport allows.
type Policy struct {
	// AllowHTTP allows plain http:// requests.
	AllowHTTP bool
	// AllowOtherHosts follows redirects to other hosts.
	AllowOtherHosts bool
	// Guard, when set, refuses connections to private ranges.
	Guard *Guard
}

// Transport wraps base (nil: a clone of http.DefaultTransport) with p.
// With a Guard, base must be an *http.Transport (or one from here): its
// dialer is replaced by a guarded one; any other base fails every request,
// so a guard is never silently dropped.
func Transport(base http.RoundTripper, p Policy) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if w, ok := base.(*transport); ok {
		base = w.inner
	}
	if tr, ok := base.(*http.Transport); ok {
		tr = tr.Clone()
		if tr.MaxResponseHeaderBytes == 0 || tr.MaxResponseHeaderBytes > maxHeader {
			tr.MaxResponseHeaderBytes = maxHeader
		}
		if p.Guard != nil {
			d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: p.Guard.Control}
			tr.DialContext = d.DialContext
			tr.DialTLSContext = nil
			tr.Dial = nil    //nolint:staticcheck // a set Dial would bypass the guard
			tr.DialTLS = nil //nolint:staticcheck
			// Through a proxy the guard would see only the proxy's
			// address, and the proxy would reach the tenant's target.
			tr.Proxy = nil
		}
		base = tr
	} else if p.Guard != nil {
		return failing{}
	}
	return &transport{inner: base, policy: p}
}

// Client is an http.Client over Transport(base, p) whose redirects follow
// p too.
func Client(base http.RoundTripper, p Policy, timeout time.Duration) *http.Client {
	return &http.Client{Transport: Transport(base, p), Timeout: timeout, CheckRedirect: p.CheckRedirect}
}

// Cap wraps rt so that every body it returns is capped, without changing
// how it connects: for clients built elsewhere.
func Cap(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	if _, ok := rt.(*transport); ok {
		return rt
	}
	return &transport{inner: rt, policy: Policy{AllowHTTP: true, AllowOtherHosts: true}}
}

// Base returns the *http.Transport under rt, for SDKs that build their own
// client from one.
func Base(rt http.RoundTripper) (*http.Transport, bool) {
	if w, ok := rt.(*transport); ok {
		rt = w.inner
	}
	tr, ok := rt.(*http.Transport)
	return tr, ok
}

// CheckRedirect is an http.Client's redirect policy for p.
func (p Policy) CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return p.redirect(req, via[len(via)-1])
}

func (p Policy) redirect(req, prev *http.Request) error {
	if prev.URL.Scheme == "https" && req.URL.Scheme != "https" {
		return ErrRedirect
	}
	if !p.AllowOtherHosts && req.URL.Host != prev.URL.Host {
		return ErrRedirect
	}
	return nil
}

type transport struct {
	inner  http.RoundTripper
	policy Policy
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.policy.AllowHTTP {
		closeBody(req)
		return nil, ErrPlainHTTP
	}
	// A client that follows redirects sets Response on the next request:
	// the policy holds even under a client whose CheckRedirect is not ours
	// (go-containerregistry and the SDKs build their own).
	if prev := req.Response; prev != nil && prev.Request != nil {
		if err := t.policy.redirect(req, prev.Request); err != nil {
			closeBody(req)
			return nil, err
		}
	}
	resp, err := t.inner.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.Body != nil {
		resp.Body = &capped{inner: resp.Body, status: resp.StatusCode}
	}
	return resp, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// BodyTooLargeError is ErrBodyTooLarge with the answer's status code.
type BodyTooLargeError struct{ StatusCode int }

func (e *BodyTooLargeError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", ErrBodyTooLarge, e.StatusCode)
}

// Is makes errors.Is(err, ErrBodyTooLarge) hold.
func (e *BodyTooLargeError) Is(target error) bool { return target == ErrBodyTooLarge }

// capped reads at most MaxBody bytes of inner, then fails.
type capped struct {
	inner  io.ReadCloser
	status int
	n      int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.n > MaxBody {
		return 0, &BodyTooLargeError{StatusCode: c.status}
	}
	if rest := MaxBody + 1 - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.inner.Read(p)
	c.n += int64(n)
	if c.n > MaxBody {
		// The byte past the cap is withheld: what the reader got is the
		// first MaxBody bytes, and an error instead of EOF.
		return n - 1, &BodyTooLargeError{StatusCode: c.status}
	}
	return n, err
}

func (c *capped) Close() error { return c.inner.Close() }

type failing struct{}

func (failing) RoundTrip(req *http.Request) (*http.Response, error) {
	closeBody(req)
	return nil, errors.New("egress: a guarded transport needs an *http.Transport to guard")
}
