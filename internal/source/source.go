// Package source turns a credential's source into a docker config. Each
// source kind (only a Secret so far) implements Provider. Providers read
// from the API server and never write, and their errors never carry a
// secret value.
package source

import (
	"context"
	"time"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/dockercfg"
)

// Request asks a provider for the credential of one credential object.
type Request struct {
	// Namespace is where a namespaced source (a Secret) lives.
	Namespace string
	// Registries are the credential's registry keys; sources that carry no
	// registry of their own (basic-auth, cloud tokens) key their entries by
	// them.
	Registries []string
}

// Result is a resolved credential.
type Result struct {
	Config *dockercfg.Config
	// Version changes whenever the source changes (a resourceVersion, a
	// token's issue time).
	Version string
	// ExpiresAt is when a short-lived token stops working; zero for
	// credentials without an expiry.
	ExpiresAt time.Time
	// RefreshedAt is when the token was got, RefreshAt when the next one
	// will be asked for.
	RefreshedAt, RefreshAt time.Time
	// Previous is the config of the token this one replaced, while that
	// is still good: copies holding it are not out of date.
	Previous *dockercfg.Config
	// RefreshErr is why the last refresh failed while the token served
	// is still good; nil when it did not.
	RefreshErr error
}

// Reason classifies a source failure for status conditions.
type Reason string

// The reasons are the API's condition reasons.
const (
	// NotFound: the source does not exist (yet).
	NotFound Reason = v1alpha1.ReasonSourceNotFound
	// Invalid: the source exists but cannot be used as it is.
	Invalid Reason = v1alpha1.ReasonSourceInvalid
	// Unavailable: the source could not be read right now; retry.
	Unavailable Reason = v1alpha1.ReasonSourceUnavailable
)

// Error is a source failure.
type Error struct {
	Reason  Reason
	Message string
}

func (e *Error) Error() string { return e.Message }

// Provider resolves one kind of source.
type Provider interface {
	Resolve(ctx context.Context, req Request) (*Result, error)
}
