package fakecloud

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Azure is Microsoft Entra ID's token endpoint (client secrets and
// federated client assertions) over HTTPS, and ACR's /oauth2/exchange,
// which a test mounts on its registry (testregistry.WithHandler).
type Azure struct {
	*server
	Behavior
	Tenant string

	issuer Issuer
	// registry is the login server the exchange serves.
	registry string
	signer   jose.Signer
	// federated: client ID -> subjects it trusts.
	federated subjects

	mu      sync.Mutex
	secrets map[string]string    // client ID -> secret
	tokens  map[string]time.Time // Entra access tokens -> expiry
	oidc    *OIDC
}

// StartAzure starts the fake for one tenant; ACR refresh tokens last 3
// hours unless SetLife says otherwise.
func StartAzure(tenant string) (*Azure, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	a := &Azure{Tenant: tenant, signer: signer, secrets: map[string]string{}, tokens: map[string]time.Time{}}
	a.life = 3 * time.Hour
	mux := http.NewServeMux()
	mux.HandleFunc("GET /"+tenant+"/v2.0/.well-known/openid-configuration", a.discovery)
	mux.HandleFunc("POST /"+tenant+"/oauth2/v2.0/token", a.token)
	s, err := startTLS(mux)
	if err != nil {
		return nil, err
	}
	a.server = s
	return a, nil
}

// ServeRegistry makes the exchange serve a registry, whose token server
// learns the refresh tokens issued.
func (a *Azure) ServeRegistry(loginServer string, issuer Issuer) {
	a.mu.Lock()
	a.registry, a.issuer = loginServer, issuer
	a.mu.Unlock()
}

// NewClientSecret registers an application and returns its secret.
func (a *Azure) NewClientSecret(clientID string) string {
	secret := randomToken("", 40)
	a.mu.Lock()
	a.secrets[clientID] = secret
	a.mu.Unlock()
	return secret
}

// RevokeClient deletes an application's secret.
func (a *Azure) RevokeClient(clientID string) {
	a.mu.Lock()
	delete(a.secrets, clientID)
	a.mu.Unlock()
}

// TrustOIDC makes federated credentials accept ServiceAccount tokens of
// the issuer.
func (a *Azure) TrustOIDC(o *OIDC) { a.mu.Lock(); a.oidc = o; a.mu.Unlock() }

// AllowFederated adds a federated credential: subject may act as clientID.
func (a *Azure) AllowFederated(clientID, subject string) { a.federated.allow(clientID, subject) }

func (a *Azure) discovery(w http.ResponseWriter, r *http.Request) {
	base := a.URL + "/" + a.Tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"issuer":                                base + "/v2.0",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_types_supported":              []string{"code", "id_token", "token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"tenant_region_scope":                   "WW",
	})
}

func aadError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc, "error_codes": []int{700016}})
}

func (a *Azure) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		aadError(w, http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: unsupported grant type")
		return
	}
	// MSAL adds the OpenID scopes to every request.
	if !slices.Contains(strings.Fields(r.PostForm.Get("scope")), "https://containerregistry.azure.net/.default") {
		aadError(w, http.StatusBadRequest, "invalid_scope", "AADSTS70011: invalid scope")
		return
	}
	clientID := r.PostForm.Get("client_id")
	a.mu.Lock()
	secret, known := a.secrets[clientID]
	oidc := a.oidc
	a.mu.Unlock()
	switch {
	case r.PostForm.Get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
		subject, err := oidc.Verify(r.PostForm.Get("client_assertion"), "api://AzureADTokenExchange")
		if err != nil || !a.federated.allowed(clientID, subject) {
			aadError(w, http.StatusUnauthorized, "invalid_client", "AADSTS70021: No matching federated identity record found for presented assertion.")
			return
		}
	case known && r.PostForm.Get("client_secret") == secret:
	default:
		aadError(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return
	}
	_, _, throttled, fail := a.next()
	switch {
	case throttled:
		aadError(w, http.StatusTooManyRequests, "temporarily_unavailable", "AADSTS50196: too many requests")
		return
	case fail != 0:
		aadError(w, fail, "server_error", "AADSTS90000: failure")
		return
	}
	access := randomToken("eyJ0eXAi.", 64)
	a.mu.Lock()
	a.tokens[access] = time.Now().Add(time.Hour)
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access})
}

// Exchange is ACR's /oauth2/exchange: an Entra access token for a
// registry refresh token (a JWT the registry's token server accepts as
// the password of 00000000-0000-0000-0000-000000000000 until it expires).
func (a *Azure) Exchange() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "access_token" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported grant_type"})
			return
		}
		a.mu.Lock()
		exp, ok := a.tokens[r.PostForm.Get("access_token")]
		registry, issuer := a.registry, a.issuer
		life := a.life
		a.mu.Unlock()
		if !ok || time.Now().After(exp) || r.PostForm.Get("service") != registry || r.PostForm.Get("tenant") != a.Tenant {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid access token, service or tenant"})
			return
		}
		now := time.Now()
		expires := now.Add(life)
		refresh, err := jwt.Signed(a.signer).Claims(jwt.Claims{
			ID: randomToken("", 16), Subject: "regcred", Audience: jwt.Audience{registry}, Issuer: "Azure Container Registry",
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(expires),
		}).Serialize()
		if err != nil {
			http.Error(w, "sign", http.StatusInternalServerError)
			return
		}
		issuer.AllowTemporary("00000000-0000-0000-0000-000000000000", refresh, expires)
		writeJSON(w, http.StatusOK, map[string]string{"refresh_token": refresh})
	})
}
