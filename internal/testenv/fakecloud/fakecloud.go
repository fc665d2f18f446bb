// Package fakecloud serves the wire formats of the cloud token services
// regcred talks to (AWS ECR and STS, Google's OAuth2 token endpoint, STS
// and metadata server, Microsoft Entra ID and ACR's token exchange) on
// loopback, checking requests as the clouds do: SigV4 signatures, signed
// JWT grants, federated tokens against the cluster's OIDC keys. The
// registry logins they issue are short-lived passwords a test registry
// accepts until they expire. For tests only.
package fakecloud

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"regcred.dev/regcred/internal/testenv/testserver"
)

// Issuer is where a fake cloud registers the registry logins it issues:
// testregistry.Registry.AllowTemporary.
type Issuer interface {
	AllowTemporary(user, password string, expires time.Time)
}

// Behavior is what a test makes a fake cloud do next; safe for
// concurrent use.
type Behavior struct {
	mu sync.Mutex
	// life of the tokens issued.
	life time.Duration
	// skew shifts the expiry the fake reports from the real one.
	skew time.Duration
	// throttle answers the next n token requests with throttling.
	throttle int
	// fail answers every token request with this status until cleared.
	fail int
	// delay holds each token request this long.
	delay time.Duration
	// requests counts token requests (not STS or metadata calls).
	requests int
}

// SetLife sets the life of the tokens issued from now on.
func (b *Behavior) SetLife(d time.Duration) { b.mu.Lock(); b.life = d; b.mu.Unlock() }

// SetSkew makes the reported expiry d later than the real one (a cloud
// whose clock runs ahead); negative d reports it earlier.
func (b *Behavior) SetSkew(d time.Duration) { b.mu.Lock(); b.skew = d; b.mu.Unlock() }

// Throttle answers the next n token requests with the cloud's throttling
// error.
func (b *Behavior) Throttle(n int) { b.mu.Lock(); b.throttle = n; b.mu.Unlock() }

// Fail answers token requests with HTTP status (0 stops failing).
func (b *Behavior) Fail(status int) { b.mu.Lock(); b.fail = status; b.mu.Unlock() }

// SetDelay holds each token request for d.
func (b *Behavior) SetDelay(d time.Duration) { b.mu.Lock(); b.delay = d; b.mu.Unlock() }

// Requests is how many token requests arrived.
func (b *Behavior) Requests() int { b.mu.Lock(); defer b.mu.Unlock(); return b.requests }

// next counts a request and says how to answer it: the token's real life
// and reported skew, or a throttle or failure.
func (b *Behavior) next() (life, skew time.Duration, throttled bool, fail int) {
	b.mu.Lock()
	b.requests++
	life, skew, fail, delay := b.life, b.skew, b.fail, b.delay
	if b.throttle > 0 {
		b.throttle--
		throttled = true
	}
	b.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	return life, skew, throttled, fail
}

// server is an HTTPS server on loopback with its own CA.
type server = testserver.TLS

func startTLS(h http.Handler) (*server, error) { return testserver.StartTLS(h, nil, "fakecloud CA") }

// ClientTrusting returns an HTTP client that trusts the given CAs (PEM)
// besides nothing else.
func ClientTrusting(caPEMs ...[]byte) *http.Client {
	pool := x509.NewCertPool()
	for _, p := range caPEMs {
		pool.AppendCertsFromPEM(p)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 30 * time.Second}
}

// OIDC checks ServiceAccount tokens the way a cloud trusting the cluster's
// issuer does: signature against the issuer's keys, issuer, audience,
// expiry.
type OIDC struct {
	Issuer string
	Keys   jose.JSONWebKeySet
}

// ParseJWKS reads a JSON Web Key Set (the API server's /openid/v1/jwks).
func ParseJWKS(data []byte) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	err := json.Unmarshal(data, &set)
	return set, err
}

// Verify returns the token's subject if it is valid for audience.
func (o *OIDC) Verify(raw, audience string) (string, error) {
	if o == nil {
		return "", errors.New("no OIDC provider is trusted")
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return "", fmt.Errorf("not a JWT: %w", err)
	}
	var claims jwt.Claims
	if err := tok.Claims(o.Keys, &claims); err != nil {
		return "", fmt.Errorf("signature: %w", err)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: o.Issuer, AnyAudience: jwt.Audience{audience}, Time: time.Now()}, 0); err != nil {
		return "", err
	}
	return claims.Subject, nil
}

func randomToken(prefix string, n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[randIntn(len(alphabet))]
	}
	return prefix + string(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// subjects is a set of allowed token subjects ("system:serviceaccount:NS:NAME").
type subjects struct {
	mu  sync.Mutex
	set map[string][]string // principal (role, provider, client) -> subjects
}

func (s *subjects) allow(principal, subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set == nil {
		s.set = map[string][]string{}
	}
	s.set[principal] = append(s.set[principal], subject)
}

func (s *subjects) allowed(principal, subject string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.set[principal], subject)
}

func trimSlash(s string) string { return strings.TrimSuffix(s, "/") }

func parseForm(body []byte) (url.Values, error) { return url.ParseQuery(string(body)) }

// Trust is a set of CAs that can grow while clients made from it are in
// use: one manager serves every test of a package, while each test starts
// its own fake clouds and registries.
type Trust struct {
	mu   sync.Mutex
	pool *x509.CertPool
}

// Add trusts a CA (PEM) from now on.
func (t *Trust) Add(caPEM []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pool == nil {
		t.pool = x509.NewCertPool()
	}
	t.pool.AppendCertsFromPEM(caPEM)
}

// Client verifies servers against the CAs added so far.
func (t *Trust) Client() *http.Client {
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no server certificate")
		}
		t.mu.Lock()
		pool := t.pool
		if pool != nil {
			pool = pool.Clone()
		}
		t.mu.Unlock()
		if pool == nil {
			return errors.New("no CA is trusted")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: cs.ServerName})
		return err
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is VerifyConnection's, against the growing set.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection:   verify,
	}}}
}

// ClusterOIDC reads the API server's ServiceAccount issuer and keys, from
// its OIDC discovery endpoints, as a cloud trusting the cluster does.
func ClusterOIDC(ctx context.Context, cfg *rest.Config) (*OIDC, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("OIDC discovery: %w", err)
	}
	var disco struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(raw, &disco); err != nil {
		return nil, err
	}
	raw, err = cs.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("OIDC keys: %w", err)
	}
	keys, err := ParseJWKS(raw)
	if err != nil {
		return nil, err
	}
	return &OIDC{Issuer: disco.Issuer, Keys: keys}, nil
}
