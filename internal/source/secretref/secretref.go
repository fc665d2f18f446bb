// Package secretref resolves credentials whose source is a Secret of type
// kubernetes.io/dockerconfigjson, kubernetes.io/dockercfg or
// kubernetes.io/basic-auth.
package secretref

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/source"
)

// Provider reads the Secret with a reader that should not cache every
// Secret of the cluster (an uncached API reader).
type Provider struct {
	Reader client.Reader
	Name   string
}

var _ source.Provider = (*Provider)(nil)

// Resolve reads and parses the Secret.
func (p *Provider) Resolve(ctx context.Context, req source.Request) (*source.Result, error) {
	var s corev1.Secret
	if err := p.Reader.Get(ctx, client.ObjectKey{Namespace: req.Namespace, Name: p.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &source.Error{Reason: source.NotFound, Message: fmt.Sprintf("source Secret %s/%s not found", req.Namespace, p.Name)}
		}
		return nil, &source.Error{Reason: source.Unavailable, Message: fmt.Sprintf("read source Secret %s/%s: %v", req.Namespace, p.Name, err)}
	}
	cfg, err := dockercfg.ParseSecretData(string(s.Type), s.Data, req.Registries)
	if err != nil {
		return nil, &source.Error{Reason: source.Invalid, Message: fmt.Sprintf("source Secret %s/%s: %v", req.Namespace, p.Name, err)}
	}
	// Only the entries the credential is for are copied: the source may
	// hold logins for other registries, which must not reach every
	// namespace the credential does.
	all := len(cfg.Auths)
	cfg, _ = credential.CoveredEntries(cfg, req.Registries)
	if all > 0 && len(cfg.Auths) == 0 {
		return nil, &source.Error{Reason: source.Invalid, Message: fmt.Sprintf("source Secret %s/%s: none of its %d entries is for spec.registries", req.Namespace, p.Name, all)}
	}
	if err := cfg.Validate(); err != nil {
		return nil, &source.Error{Reason: source.Invalid, Message: fmt.Sprintf("source Secret %s/%s: %v", req.Namespace, p.Name, err)}
	}
	return &source.Result{Config: cfg, Version: s.ResourceVersion}, nil
}
