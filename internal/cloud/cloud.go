// Package cloud gets short-lived registry tokens from Amazon ECR, Google,
// Azure Container Registry and kubelet credential provider plugins, and
// keeps them fresh from their real expiry. It talks to the clouds through
// their own SDKs and to nothing in Kubernetes: the identity material (keys,
// ServiceAccount tokens) comes in as functions the caller provides. No
// token, key or password ever appears in an error.
package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/egress"
)

// Kinds of sources, for metrics and messages.
const (
	KindECR                = "ecr"
	KindGCP                = "gcp"
	KindACR                = "acr"
	KindCredentialProvider = "credentialProvider"
)

// Fixed user names of token logins.
const (
	ECRUsername = "AWS"
	GCPUsername = "oauth2accesstoken"
	ACRUsername = "00000000-0000-0000-0000-000000000000"
)

// Auth is one registry login.
type Auth struct {
	Username string
	Password string
}

// String never shows the password.
func (a Auth) String() string { return fmt.Sprintf("{Username:%s Password:[redacted]}", a.Username) }

// GoString never shows the password.
func (a Auth) GoString() string { return a.String() }

// Token is a short-lived login.
type Token struct {
	// Auth serves every registry of the credential, unless PerRegistry
	// has an entry for it.
	Auth Auth
	// PerRegistry holds logins for single registries (plugins answer per
	// registry).
	PerRegistry map[string]Auth
	// ReceivedAt is when the token arrived, on the local clock.
	ReceivedAt time.Time
	// ExpiresAt is when it stops working, on the local clock.
	ExpiresAt time.Time
	// Registry is the registry host the cloud named with the token (ECR's
	// proxyEndpoint), if it did.
	Registry string
}

// Config renders the token as a docker config keyed by registries.
func (t *Token) Config(registries []string) *dockercfg.Config {
	cfg := &dockercfg.Config{Auths: map[string]dockercfg.Entry{}}
	for _, r := range registries {
		a, ok := t.PerRegistry[r]
		if !ok {
			a = t.Auth
		}
		if a.Username == "" && a.Password == "" {
			continue
		}
		cfg.Auths[r] = dockercfg.Entry{Username: a.Username, Password: a.Password}
	}
	return cfg
}

// Reason classifies a token failure; the values are condition reasons.
type Reason string

// The reasons.
const (
	TokenRequestFailed Reason = "TokenRequestFailed"
	IdentityNotFound   Reason = "IdentityNotFound"
	AccessDenied       Reason = "AccessDenied"
	Throttled          Reason = "Throttled"
	// Invalid: the source's configuration cannot work as written.
	Invalid Reason = "SourceInvalid"
)

// Error is a token failure. Message never holds a secret.
type Error struct {
	Reason  Reason
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorf(reason Reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Fetcher gets one kind of token for one identity.
type Fetcher interface {
	// Key identifies the token: two fetchers with one key get
	// interchangeable tokens, so they share one request.
	Key() string
	// Kind is KindECR, KindGCP, KindACR or KindCredentialProvider.
	Kind() string
	// Fetch asks for a new token.
	Fetch(ctx context.Context) (*Token, error)
}

// Env is what fetchers need from their surroundings.
type Env struct {
	// HTTPClient talks to the cloud; nil is http.DefaultClient's
	// transport with the system roots. Whatever it is, every answer is
	// read through egress's cap (egress.MaxBody); build it with
	// egress.Client to also guard its connections.
	HTTPClient *http.Client
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// defaultClient is the client of an Env without one: capped answers,
// redirects to the same host only. Plain HTTP stays allowed: the
// metadata servers of ambient identities (Azure IMDS, GCE) speak it, and
// tenants get an Env of their own, guarded and HTTPS only.
var defaultClient = sync.OnceValue(func() *http.Client { return egress.Client(nil, egress.Policy{AllowHTTP: true}, 0) })

// client is e's HTTP client with every answer capped at egress.MaxBody
// and redirects kept to the same host over HTTPS, whoever built it: a
// token endpoint is the tenant's to pick, and its answer reaches memory
// and, as an error, status.
func (e Env) client() *http.Client {
	c := e.HTTPClient
	if c == nil {
		return defaultClient()
	}
	redirect := c.CheckRedirect
	if redirect == nil {
		redirect = egress.Policy{AllowHTTP: true}.CheckRedirect
	}
	return &http.Client{Transport: egress.Cap(c.Transport), Timeout: c.Timeout, Jar: c.Jar, CheckRedirect: redirect}
}

func (e Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Identity is who asks a cloud for a token. With neither Keys nor
// WebIdentity it is the process's ambient identity.
type Identity struct {
	// Keys reads the key material, every time a token is fetched, so that
	// rotated keys are used from the next refresh on.
	Keys func(ctx context.Context) (map[string][]byte, error)
	// KeysID names where the keys live (namespace/name), for cache keys
	// and messages.
	KeysID string
	// WebIdentity is a federated identity.
	WebIdentity *WebIdentity
}

// WebIdentity is a ServiceAccount token exchanged for a cloud identity.
type WebIdentity struct {
	// ServiceAccount is namespace/name, for cache keys and messages.
	ServiceAccount string
	Audience       string
	// RoleARN is the AWS role to assume.
	RoleARN string
	// Token mints a ServiceAccount token for Audience.
	Token func(ctx context.Context) (string, error)
}

// id identifies the identity in cache keys.
func (i Identity) id() string {
	switch {
	case i.WebIdentity != nil:
		return "webIdentity:" + i.WebIdentity.ServiceAccount + "|" + i.WebIdentity.Audience + "|" + i.WebIdentity.RoleARN
	case i.Keys != nil:
		return "secret:" + i.KeysID
	default:
		return "ambient"
	}
}

// Describe says in words who the identity is.
func (i Identity) Describe() string {
	switch {
	case i.WebIdentity != nil:
		return "ServiceAccount " + i.WebIdentity.ServiceAccount
	case i.Keys != nil:
		return "keys in Secret " + i.KeysID
	default:
		return "the manager's ambient identity"
	}
}

func (i Identity) keys(ctx context.Context, required ...string) (map[string][]byte, error) {
	data, err := i.Keys(ctx)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, k := range required {
		if len(data[k]) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, errorf(Invalid, "Secret %s has no %s", i.KeysID, strings.Join(missing, ", "))
	}
	return data, nil
}

func (i Identity) subjectToken(ctx context.Context) (string, error) {
	tok, err := i.WebIdentity.Token(ctx)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			return "", ce
		}
		return "", errorf(IdentityNotFound, "mint a token for ServiceAccount %s: %v", i.WebIdentity.ServiceAccount, err)
	}
	return tok, nil
}

func sortedJoin(s []string) string {
	s = slices.Clone(s)
	slices.Sort(s)
	return strings.Join(s, ",")
}
