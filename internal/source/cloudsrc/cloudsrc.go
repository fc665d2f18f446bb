// Package cloudsrc resolves credentials whose source is a cloud token
// (ecr, gcp, acr) or a kubelet credential provider plugin: it builds the
// cloud package's fetchers from a credential's spec, reading key Secrets
// and minting ServiceAccount tokens through the API server, and serves
// tokens from a shared cloud.Cache.
package cloudsrc

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/redact"
	"regcred.dev/regcred/internal/source"
)

// serviceAccountTokenSeconds is the life of the ServiceAccount tokens
// minted for web identities: they are used at once and thrown away.
const serviceAccountTokenSeconds = 600

// Builder makes fetchers for credentials.
type Builder struct {
	// Reader reads key Secrets (an uncached API reader).
	Reader client.Reader
	// Client mints ServiceAccount tokens (TokenRequest).
	Client client.Client
	Env    cloud.Env
	// TenantEnv, when set, is the Env of RegistryCredentials' sources:
	// its client refuses private addresses (egress's guard).
	TenantEnv *cloud.Env
	// PluginDir is the only directory credential provider plugins may be
	// run from; empty turns plugin sources off.
	PluginDir string
	// TenantEndpointHosts are the hosts (host or host:port) a
	// RegistryCredential's endpoint overrides, and the token_uri of a
	// tenant's Google key, may name; empty refuses every override.
	TenantEndpointHosts []string
	// Self returns the user the manager runs as; nil asks the API server
	// (a SelfSubjectReview). Asked once, on the first mint.
	Self func(ctx context.Context) (string, error)

	selfMu   sync.Mutex
	selfName string
}

// env is the Env of a tenant's source or of a cluster one.
func (b *Builder) env(tenant bool) cloud.Env {
	if tenant && b.TenantEnv != nil {
		return *b.TenantEnv
	}
	return b.Env
}

// IsCloud reports whether a source is served by this package.
func IsCloud(s *v1alpha1.CredentialSource) bool {
	return s.ECR != nil || s.GCP != nil || s.ACR != nil || s.CredentialProvider != nil
}

// Fetcher builds the fetcher of a cloud source whose identity lives in
// namespace. It does no I/O: keys and tokens are read when a token is
// fetched, so Key() can index credentials. A tenant's source (a
// RegistryCredential's) may not act as the manager: no ambient identity,
// no plugin, no endpoint override to a host the manager does not allow.
func (b *Builder) Fetcher(src *v1alpha1.CredentialSource, namespace string, registries []string, tenant bool) (cloud.Fetcher, error) {
	if err := b.allowed(src, tenant); err != nil {
		return nil, err
	}
	switch {
	case src.ECR != nil:
		s := src.ECR
		return &cloud.ECR{Region: s.Region, RegistryIDs: s.RegistryIDs, Public: s.Public, Endpoint: s.Endpoint,
			Identity: b.identity(s.Identity, namespace), Env: b.env(tenant)}, nil
	case src.GCP != nil:
		s := src.GCP
		g := &cloud.GCP{TokenURL: s.TokenURL, Identity: b.identity(s.Identity, namespace), Env: b.env(tenant)}
		if tenant {
			g.KeyTokenURLAllowed = b.tenantHostAllowed
		}
		return g, nil
	case src.ACR != nil:
		s := src.ACR
		return &cloud.ACR{Registry: s.Registry, TenantID: s.TenantID, ClientID: s.ClientID, AuthorityHost: s.AuthorityHost,
			Identity: b.identity(s.Identity, namespace), Env: b.env(tenant)}, nil
	case src.CredentialProvider != nil:
		s := src.CredentialProvider
		p := &cloud.Plugin{Command: s.Command, Args: s.Args, Registries: registries, Run: b.Env, Dir: b.PluginDir}
		for _, e := range s.Env {
			p.Env = append(p.Env, e.Name+"="+e.Value)
		}
		if s.DefaultCacheDuration != nil {
			p.DefaultCacheDuration = s.DefaultCacheDuration.Duration
		}
		if s.Timeout != nil {
			p.Timeout = s.Timeout.Duration
		}
		return p, nil
	}
	return nil, errors.New("not a cloud source")
}

// ErrTenantAmbient and ErrTenantPlugin refuse a RegistryCredential what
// would let a tenant act as regcred's manager.
var (
	ErrTenantAmbient = errors.New("a RegistryCredential cannot use the manager's own cloud identity: set identity.webIdentity (a ServiceAccount of its namespace) or identity.secretRef")
	ErrTenantPlugin  = errors.New("a RegistryCredential cannot run a credential provider plugin (it would run as regcred's manager): use a ClusterRegistryCredential")
)

func (b *Builder) allowed(src *v1alpha1.CredentialSource, tenant bool) error {
	if p := src.CredentialProvider; p != nil {
		if tenant {
			return ErrTenantPlugin
		}
		if b.PluginDir == "" {
			return errors.New("credential provider plugins are off: start the manager with --credential-provider-dir DIR and put the plugin there")
		}
		dir := filepath.Clean(b.PluginDir) + string(filepath.Separator)
		if !strings.HasPrefix(filepath.Clean(p.Command), dir) {
			return fmt.Errorf("credential provider plugin %s is not in %s, the only directory plugins run from", p.Command, b.PluginDir)
		}
		return nil
	}
	if !tenant {
		return nil
	}
	if id := src.CloudIdentity(); id != nil && id.SecretRef == nil && id.WebIdentity == nil {
		return ErrTenantAmbient
	}
	return b.tenantEndpoints(src)
}

func (b *Builder) identity(id v1alpha1.CloudIdentity, namespace string) cloud.Identity {
	switch {
	case id.WebIdentity != nil:
		w := id.WebIdentity
		sa := namespace + "/" + w.ServiceAccountName
		return cloud.Identity{WebIdentity: &cloud.WebIdentity{ServiceAccount: sa, Audience: w.Audience, RoleARN: w.RoleARN,
			Token: func(ctx context.Context) (string, error) {
				return b.mint(ctx, namespace, w.ServiceAccountName, w.Audience)
			}}}
	case id.SecretRef != nil:
		name := id.SecretRef.Name
		return cloud.Identity{KeysID: namespace + "/" + name, Keys: func(ctx context.Context) (map[string][]byte, error) {
			var s corev1.Secret
			if err := b.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &s); err != nil {
				if apierrors.IsNotFound(err) {
					return nil, &cloud.Error{Reason: cloud.IdentityNotFound, Message: fmt.Sprintf("keys Secret %s/%s not found", namespace, name)}
				}
				return nil, &cloud.Error{Reason: cloud.TokenRequestFailed, Message: fmt.Sprintf("read keys Secret %s/%s: %v", namespace, name, err)}
			}
			return s.Data, nil
		}}
	}
	return cloud.Identity{}
}

// Provider serves a cloud source's token from the cache.
type Provider struct {
	Cache   *cloud.Cache
	Fetcher cloud.Fetcher
}

var _ source.Provider = (*Provider)(nil)

// Resolve returns the token as a docker config keyed by the credential's
// registries.
func (p *Provider) Resolve(ctx context.Context, req source.Request) (*source.Result, error) {
	lease, err := p.Cache.Get(ctx, p.Fetcher)
	if err != nil {
		return nil, SourceError(err)
	}
	res := &source.Result{
		Config:      lease.Config(req.Registries),
		Version:     strconv.FormatInt(lease.ReceivedAt.UnixNano(), 10),
		ExpiresAt:   lease.ExpiresAt,
		RefreshedAt: lease.ReceivedAt,
		RefreshAt:   lease.RefreshAt,
	}
	if lease.LastError != nil {
		res.RefreshErr = lease.LastError
	}
	if lease.Previous != nil {
		res.Previous = lease.Previous.Config(req.Registries)
	}
	return res, nil
}

// SourceError turns a token failure into a source failure with the
// condition reason of its class.
func SourceError(err error) *source.Error {
	var ce *cloud.Error
	if !errors.As(err, &ce) {
		return &source.Error{Reason: source.Reason(v1alpha1.ReasonTokenRequestFailed), Message: redact.Message(err.Error())}
	}
	reason := source.Reason(ce.Reason)
	if ce.Reason == cloud.Invalid {
		reason = source.Invalid
	}
	// A token endpoint's answer may be quoted in the message: one line,
	// bounded (cloud keeps tokens out of it).
	return &source.Error{Reason: reason, Message: redact.Message(ce.Message)}
}
