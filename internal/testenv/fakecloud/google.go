package fakecloud

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Google is Google's OAuth2 token endpoint (the JWT bearer grant of
// service account keys), its security token service (workload identity
// federation) over HTTPS, and a GCE metadata server over plain HTTP.
type Google struct {
	*server
	Behavior
	// Metadata is the metadata server; GCE_METADATA_HOST is its host.
	Metadata *httptest.Server

	issuer    Issuer
	providers subjects

	mu   sync.Mutex
	keys map[string]*rsa.PublicKey // client_email -> key
	oidc *OIDC
	// metadataAccount: the metadata server has a service account.
	metadataAccount bool
}

// StartGoogle starts the fake; access tokens last an hour unless SetLife
// says otherwise.
func StartGoogle(issuer Issuer) (*Google, error) {
	g := &Google{issuer: issuer, keys: map[string]*rsa.PublicKey{}, metadataAccount: true}
	g.life = time.Hour
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", g.jwtBearer)
	mux.HandleFunc("POST /v1/token", g.sts)
	s, err := startTLS(mux)
	if err != nil {
		return nil, err
	}
	g.server = s

	md := http.NewServeMux()
	md.HandleFunc("/computeMetadata/v1/instance/service-accounts/default/token", g.metadataToken)
	md.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "Missing Metadata-Flavor:Google header", http.StatusForbidden)
			return
		}
		http.NotFound(w, r)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.Close()
		return nil, err
	}
	g.Metadata = httptest.NewUnstartedServer(md)
	_ = g.Metadata.Listener.Close()
	g.Metadata.Listener = l
	g.Metadata.Config.ErrorLog = log.New(io.Discard, "", 0)
	g.Metadata.Start()
	return g, nil
}

// Close stops both servers.
func (g *Google) Close() {
	g.server.Close()
	g.Metadata.Close()
}

// MetadataHost is host:port of the metadata server.
func (g *Google) MetadataHost() string { return g.Metadata.Listener.Addr().String() }

// SetMetadataAccount gives the metadata server a service account or
// takes it away (a VM without one).
func (g *Google) SetMetadataAccount(ok bool) { g.mu.Lock(); g.metadataAccount = ok; g.mu.Unlock() }

// NewServiceAccountKey makes a key for email and returns its JSON key
// file, whose token_uri is this fake.
func (g *Google) NewServiceAccountKey(email string) ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.keys[email] = &key.PublicKey
	g.mu.Unlock()
	return json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "regcred-test",
		"private_key_id": randomToken("", 40),
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   email,
		"client_id":      "1234567890",
		"token_uri":      g.URL + "/token",
	})
}

// DeleteKey revokes the keys of email.
func (g *Google) DeleteKey(email string) { g.mu.Lock(); delete(g.keys, email); g.mu.Unlock() }

// TrustOIDC makes STS accept ServiceAccount tokens of the issuer.
func (g *Google) TrustOIDC(o *OIDC) { g.mu.Lock(); g.oidc = o; g.mu.Unlock() }

// AllowProvider lets subject exchange tokens at the workload identity
// provider audience.
func (g *Google) AllowProvider(audience, subject string) { g.providers.allow(audience, subject) }

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// issue answers a token request: a throttle, a failure, or an access
// token the registry accepts for its life.
func (g *Google) issue(w http.ResponseWriter, extra map[string]any) {
	life, _, throttled, fail := g.next()
	switch {
	case throttled:
		oauthError(w, http.StatusTooManyRequests, "rate_limit_exceeded", "Quota exceeded")
		return
	case fail != 0:
		oauthError(w, fail, "internal_failure", "failure")
		return
	}
	token := randomToken("ya29.", 64)
	g.issuer.AllowTemporary("oauth2accesstoken", token, time.Now().Add(life))
	out := map[string]any{"access_token": token, "token_type": "Bearer", "expires_in": int(life.Seconds())}
	for k, v := range extra {
		out[k] = v
	}
	writeJSON(w, http.StatusOK, out)
}

// jwtBearer checks a service account's signed assertion (RFC 7523).
func (g *Google) jwtBearer(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type")
		return
	}
	tok, err := jwt.ParseSigned(r.PostForm.Get("assertion"), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT")
		return
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT")
		return
	}
	g.mu.Lock()
	pub := g.keys[unverified.Issuer]
	g.mu.Unlock()
	var claims struct {
		jwt.Claims
		Scope string `json:"scope"`
	}
	if pub == nil || tok.Claims(pub, &claims) != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{g.URL + "/token"}, Time: time.Now()}, time.Minute); err != nil || claims.Scope == "" {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: audience, expiry or scope")
		return
	}
	g.issue(w, nil)
}

// sts exchanges a federated token (RFC 8693) for an access token.
func (g *Google) sts(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" ||
		r.PostForm.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "unsupported exchange")
		return
	}
	audience := r.PostForm.Get("audience")
	g.mu.Lock()
	oidc := g.oidc
	g.mu.Unlock()
	subject, err := oidc.Verify(r.PostForm.Get("subject_token"), audience)
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "The subject token is invalid: "+err.Error())
		return
	}
	if !g.providers.allowed(audience, subject) {
		oauthError(w, http.StatusForbidden, "access_denied", "The caller does not have permission")
		return
	}
	g.issue(w, map[string]any{"issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
}

func (g *Google) metadataToken(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Metadata-Flavor") != "Google" {
		http.Error(w, "Missing Metadata-Flavor:Google header", http.StatusForbidden)
		return
	}
	g.mu.Lock()
	ok := g.metadataAccount
	g.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	g.issue(w, nil)
}
