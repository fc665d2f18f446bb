// Package controller reconciles RegistryCredentials and
// ClusterRegistryCredentials: one controller per concern.
//
//   - The namespace controller (key: a namespace) makes a namespace's
//     managed Secrets and ServiceAccount entries match the credentials that
//     apply to it, and removes what no longer applies. It is the only writer
//     of objects inside namespaces.
//   - The credential controller (key: a credential) resolves the source,
//     reports status, conditions, Events and metrics, and holds the
//     finalizer until the namespace controller has cleaned up.
//
// Both are event-driven; there is no timed resync.
package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
)

const (
	// indexSourceSecret indexes credentials by "namespace/name" of their
	// source Secret.
	indexSourceSecret = "regcred.dev/source-secret"
	// indexTokenKey indexes credentials with a cloud source by the key of
	// their token in the token cache.
	indexTokenKey = "regcred.dev/token-key"
)

// getCredential reads a credential of either kind.
func getCredential(ctx context.Context, r client.Reader, key credential.Key) (*credential.Credential, error) {
	switch key.Kind {
	case credential.KindCluster:
		var obj v1alpha1.ClusterRegistryCredential
		if err := r.Get(ctx, client.ObjectKey{Name: key.Name}, &obj); err != nil {
			return nil, err
		}
		return credential.FromCluster(&obj), nil
	case credential.KindNamespaced:
		var obj v1alpha1.RegistryCredential
		if err := r.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, &obj); err != nil {
			return nil, err
		}
		return credential.FromNamespaced(&obj), nil
	default:
		return nil, fmt.Errorf("unknown credential kind %q", key.Kind)
	}
}

// ownerKey is a managed Secret's credential's key, for logs.
func ownerKey(s *corev1.Secret) string {
	if k, ok := credential.OwnerOf(s); ok {
		return k.String()
	}
	return ""
}

// requestFor is the reconcile request of a credential's own controller.
func requestFor(k credential.Key) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: k.Namespace, Name: k.Name}}
}
