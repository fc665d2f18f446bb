package testregistry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// tokenIssuer is the token server of the Docker registry token spec: it
// checks basic credentials and returns a JWT, signed with a key the registry
// trusts, that grants the requested scopes the user is allowed.
type tokenIssuer struct {
	reg      *Registry
	realm    string
	service  string
	issuer   string
	jwksFile string
	signer   jose.Signer
}

func newTokenIssuer(reg *Registry, realm, dir string) (*tokenIssuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	kid := randomString(8)
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: key.Public(), KeyID: kid, Algorithm: string(jose.ES256), Use: "sig",
	}}})
	if err != nil {
		return nil, err
	}
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		return nil, err
	}
	return &tokenIssuer{
		reg:      reg,
		realm:    realm,
		service:  "regcred-test-registry",
		issuer:   "regcred-test-token-issuer",
		jwksFile: jwksFile,
		signer:   signer,
	}, nil
}

func (ti *tokenIssuer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var (
		user, password string
		hasAuth        bool
		scopes         []string
	)
	switch req.Method {
	case http.MethodGet:
		user, password, hasAuth = req.BasicAuth()
		scopes = req.URL.Query()["scope"]
	case http.MethodPost:
		// The OAuth2 password grant some clients use instead of GET.
		if err := req.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		if req.PostForm.Get("grant_type") == "password" {
			user, password, hasAuth = req.PostForm.Get("username"), req.PostForm.Get("password"), true
		}
		scopes = strings.Fields(req.PostForm.Get("scope"))
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}

	subject := ""
	lifetime := 5 * time.Minute
	var grantable func(repo string) bool
	if hasAuth {
		u, until, ok := ti.reg.authenticate(user, password)
		if ok && !until.IsZero() && time.Until(until) < lifetime {
			// A registry token never outlives the login it was got with.
			lifetime = time.Until(until)
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="regcred-test"`)
			writeJSON(w, http.StatusUnauthorized, map[string]any{"errors": []map[string]string{{"code": "UNAUTHORIZED", "message": "authentication required"}}})
			return
		}
		subject = u.Name
		grantable = func(repo string) bool { return repoAllowed(u.Repositories, repo) }
	} else {
		// Anonymous tokens grant nothing: every repository here is private.
		grantable = func(string) bool { return false }
	}

	var access []*token.ResourceActions
	for _, scope := range scopes {
		for _, s := range strings.Fields(scope) {
			parts := strings.Split(s, ":")
			if len(parts) < 3 || parts[0] != "repository" {
				continue
			}
			repo := strings.Join(parts[1:len(parts)-1], ":")
			if !grantable(repo) {
				continue
			}
			access = append(access, &token.ResourceActions{
				Type: "repository", Name: repo, Actions: strings.Split(parts[len(parts)-1], ","),
			})
		}
	}

	now := time.Now()
	claims := token.ClaimSet{
		Issuer:     ti.issuer,
		Subject:    subject,
		Audience:   token.AudienceList{ti.service},
		Expiration: now.Add(lifetime).Unix(),
		NotBefore:  now.Add(-time.Minute).Unix(),
		IssuedAt:   now.Unix(),
		JWTID:      randomString(8),
		Access:     access,
	}
	raw, err := jwt.Signed(ti.signer).Claims(claims).Serialize()
	if err != nil {
		http.Error(w, "sign token", http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token":        raw,
		"access_token": raw,
		"expires_in":   int(lifetime.Seconds()),
		"issued_at":    now.UTC().Format(time.RFC3339),
	})
}

func repoAllowed(patterns []string, repo string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if p == repo || (strings.HasSuffix(p, "/*") && strings.HasPrefix(repo, strings.TrimSuffix(p, "*"))) {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
