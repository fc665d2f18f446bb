// Package testregistry starts a real CNCF distribution registry on
// loopback, over TLS with a CA of its own and in-memory storage, that
// authenticates as registries do: htpasswd basic auth, or the bearer
// token flow of Docker Hub, GHCR and Harbor through a token issuer it
// serves itself (scoped per user, and taking the short-lived logins a fake
// cloud hands out).
package testregistry

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"

	// Storage and auth back ends the registry configuration names.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"

	"regcred.dev/regcred/internal/pki"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testserver"
)

// AuthMode is how a test registry authenticates clients.
type AuthMode string

const (
	// Basic is htpasswd basic auth: the client sends user:password to the
	// registry itself.
	Basic AuthMode = "htpasswd"
	// Token is bearer token auth: the registry answers 401 with a
	// WWW-Authenticate: Bearer challenge naming a token realm, the client
	// gets a signed JWT there with basic auth, then presents it. Docker Hub,
	// GHCR and Harbor work this way.
	Token AuthMode = "token"
)

// User is an account on a test registry.
type User struct {
	Name     string
	Password string
	// Repositories limits, in Token mode, the repositories (exact names or
	// "prefix/*") the user's tokens grant; empty grants every repository.
	// Basic mode cannot scope access: every user may do everything.
	Repositories []string
}

// Registry is a CNCF distribution registry serving over TLS on loopback,
// with in-memory storage.
type Registry struct {
	Mode AuthMode
	// Host is host:port, as it appears in image references.
	Host string
	// CA signed the serving certificate; trust it to talk to the registry.
	CA *pki.KeyPair
	// CertDir holds ca.crt, in the layout docker, podman and skopeo read
	// through --cert-dir.
	CertDir string
	// CAFile is the PEM file of CA.
	CAFile string
	// User may pull and push everything.
	User User

	mu    sync.Mutex // guards users and temporary
	users map[string]User
	// temporary are short-lived passwords per user, with their expiry:
	// the registry logins cloud token services hand out.
	temporary map[string]map[string]time.Time
	server    *httptest.Server
	app       *handlers.App
	dir       string
}

// Option configures Start.
type Option func(*registryConfig)

type registryConfig struct {
	users    []User
	handlers map[string]http.Handler
}

// WithHandler serves h at pattern on the registry's own host (a cloud's
// token exchange endpoint, say), before the registry's API.
func WithHandler(pattern string, h http.Handler) Option {
	return func(c *registryConfig) {
		if c.handlers == nil {
			c.handlers = map[string]http.Handler{}
		}
		c.handlers[pattern] = h
	}
}

// WithUser adds an account besides the default full-access one.
func WithUser(u User) Option {
	return func(c *registryConfig) { c.users = append(c.users, u) }
}

// Start starts a registry with a fresh CA, a full-access user and any
// users given by options.
func Start(mode AuthMode, opts ...Option) (*Registry, error) {
	var cfg registryConfig
	for _, o := range opts {
		o(&cfg)
	}
	// The registry logs through logrus; test output should stay readable.
	logrus.SetOutput(io.Discard)
	logrus.SetLevel(logrus.ErrorLevel)

	dir, err := os.MkdirTemp("", "regcred-registry-")
	if err != nil {
		return nil, err
	}
	r := &Registry{Mode: mode, dir: dir, users: map[string]User{}, temporary: map[string]map[string]time.Time{}}
	ok := false
	defer func() {
		if !ok {
			r.Close()
		}
	}()

	r.User = User{Name: "regcred", Password: randomString(16)}
	for _, u := range append([]User{r.User}, cfg.users...) {
		if u.Name == "" || strings.Contains(u.Name, ":") {
			return nil, fmt.Errorf("invalid user name %q", u.Name)
		}
		r.users[u.Name] = u
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.Host = listener.Addr().String()

	conf := &configuration.Configuration{
		Storage: configuration.Storage{
			"inmemory":    configuration.Parameters{},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
			"delete":      configuration.Parameters{"enabled": true},
		},
	}
	conf.Log.Level = "error"
	conf.HTTP.Secret = randomString(32)
	conf.HTTP.Headers = http.Header{"X-Content-Type-Options": []string{"nosniff"}}

	mux := http.NewServeMux()
	if err := r.configureAuth(conf, mux); err != nil {
		return nil, err
	}
	for pattern, h := range cfg.handlers {
		mux.Handle(pattern, h)
	}
	r.app = handlers.NewApp(context.Background(), conf)
	mux.Handle("/", r.app)
	srv, err := testserver.StartTLS(mux, listener, "regcred test registry CA", "127.0.0.1", "localhost", "::1")
	if err != nil {
		_ = listener.Close()
		return nil, err
	}
	r.server, r.CA = srv.Server, srv.CA
	if err := r.writeCertDir(); err != nil {
		return nil, err
	}
	ok = true
	return r, nil
}

// configureAuth sets the registry's authentication for its mode; Token
// mode serves its token issuer on mux.
func (r *Registry) configureAuth(conf *configuration.Configuration, mux *http.ServeMux) error {
	switch r.Mode {
	case Basic:
		htpasswd := filepath.Join(r.dir, "htpasswd")
		if err := r.writeHtpasswd(htpasswd); err != nil {
			return err
		}
		conf.Auth = configuration.Auth{"htpasswd": configuration.Parameters{
			"realm": "regcred-test",
			"path":  htpasswd,
		}}
	case Token:
		issuer, err := newTokenIssuer(r, "https://"+r.Host+"/token", r.dir)
		if err != nil {
			return err
		}
		conf.Auth = configuration.Auth{"token": configuration.Parameters{
			"realm":   issuer.realm,
			"service": issuer.service,
			"issuer":  issuer.issuer,
			"jwks":    issuer.jwksFile,
		}}
		mux.Handle("/token", issuer)
	default:
		return fmt.Errorf("unknown auth mode %q", r.Mode)
	}
	return nil
}

// writeCertDir writes the CA where docker, podman and skopeo look for it.
func (r *Registry) writeCertDir() error {
	r.CertDir = filepath.Join(r.dir, "certs.d")
	if err := os.MkdirAll(r.CertDir, 0o755); err != nil {
		return err
	}
	r.CAFile = filepath.Join(r.CertDir, "ca.crt")
	return os.WriteFile(r.CAFile, r.CA.CertPEM, 0o644)
}

// UserNamed returns the account named name, with its current password.
func (r *Registry) UserNamed(name string) (User, bool) { return r.user(name) }

// user returns the account named name.
func (r *Registry) user(name string) (User, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.users[name]
	return u, ok
}

// AllowTemporary makes the token server accept password for user until
// expires, besides the user's own password: what a cloud's token service
// does for the tokens it issues. Token mode only; user need not exist (it
// then may access every repository).
func (r *Registry) AllowTemporary(user, password string, expires time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.temporary[user] == nil {
		r.temporary[user] = map[string]time.Time{}
	}
	now := time.Now()
	for p, exp := range r.temporary[user] {
		if now.After(exp) {
			delete(r.temporary[user], p)
		}
	}
	r.temporary[user][password] = expires
}

// authenticate checks a login against the user's password and its
// temporary ones; it returns the user and until when the login is good.
func (r *Registry) authenticate(name, password string) (User, time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u, ok := r.users[name]; ok && subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) == 1 {
		return u, time.Time{}, true
	}
	for p, exp := range r.temporary[name] {
		if subtle.ConstantTimeCompare([]byte(p), []byte(password)) == 1 && time.Now().Before(exp) {
			u, ok := r.users[name]
			if !ok {
				u = User{Name: name}
			}
			return u, exp, true
		}
	}
	return User{}, time.Time{}, false
}

// SetPassword changes a user's password: from then on the registry takes
// only the new one (a credential rotated at the registry).
func (r *Registry) SetPassword(name, password string) error {
	r.mu.Lock()
	u, ok := r.users[name]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("no user %q", name)
	}
	u.Password = password
	r.users[name] = u
	if r.User.Name == name {
		r.User = u
	}
	r.mu.Unlock()
	if r.Mode == Basic {
		return r.writeHtpasswd(filepath.Join(r.dir, "htpasswd"))
	}
	return nil
}

func (r *Registry) writeHtpasswd(path string) error {
	r.mu.Lock()
	users := make([]User, 0, len(r.users))
	for _, u := range r.users {
		users = append(users, u)
	}
	r.mu.Unlock()
	var b strings.Builder
	for _, u := range users {
		// MinCost keeps per-request bcrypt checks cheap in tests.
		hash, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.MinCost)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s:%s\n", u.Name, hash)
	}
	// Written aside and renamed, so the registry never reads half a file;
	// it reloads when the modification time changes.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Close stops the registry and removes its files.
func (r *Registry) Close() {
	if r.server != nil {
		r.server.Close()
	}
	if r.app != nil {
		_ = r.app.Shutdown()
	}
	_ = os.RemoveAll(r.dir)
}

// URL is the registry's base URL.
func (r *Registry) URL() string { return "https://" + r.Host }

// Transport is an HTTP transport that trusts the registry's CA.
func (r *Registry) Transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: r.CA.CertPool(), MinVersion: tls.VersionTLS12}
	return tr
}

// Auth authenticates as the full-access user.
func (r *Registry) Auth() authn.Authenticator {
	return &authn.Basic{Username: r.User.Name, Password: r.User.Password}
}

// WrongPasswordAuth is the full-access user with a wrong password.
func (r *Registry) WrongPasswordAuth() authn.Authenticator {
	return &authn.Basic{Username: r.User.Name, Password: r.User.Password + "-wrong"}
}

// DockerConfigJSON is a .dockerconfigjson holding the full-access user's
// credential for this registry.
func (r *Registry) DockerConfigJSON(t testing.TB) []byte {
	t.Helper()
	return testenv.DockerConfigJSON(t, r.Host, r.User.Name, r.User.Password)
}

// Ref is the full reference of repoAndTag on this registry.
func (r *Registry) Ref(repoAndTag string) string { return r.Host + "/" + repoAndTag }

// PushRandomImage pushes a small random single-platform image to repoAndTag
// (for example "team/app:v1") and returns its digest.
func (r *Registry) PushRandomImage(ctx context.Context, repoAndTag string) (v1.Hash, error) {
	ref, err := name.ParseReference(r.Ref(repoAndTag))
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := random.Image(512, 2)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Write(ref, img, r.RemoteOptions(ctx, r.Auth())...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return img.Digest()
}

// RemoteOptions are go-containerregistry options that reach this registry
// with the given credentials.
func (r *Registry) RemoteOptions(ctx context.Context, auth authn.Authenticator) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(r.Transport())}
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
