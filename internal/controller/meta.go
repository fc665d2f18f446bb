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
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
)

// Labels, annotations and finalizer regcred owns.
const (
	// LabelManaged marks the Secrets regcred maintains. The manager's cache
	// holds only Secrets with this label.
	LabelManaged = "regcred.dev/managed"
	// AnnotationCredential on a managed Secret names the credential it was
	// rendered from: "ClusterRegistryCredential/NAME" or
	// "RegistryCredential/NAME".
	AnnotationCredential = "regcred.dev/credential"
	// AnnotationPullSecrets on a ServiceAccount lists the imagePullSecrets
	// entries regcred added, so cleanup removes those and nothing else.
	AnnotationPullSecrets = "regcred.dev/pull-secrets"
	// Finalizer holds a credential until its Secrets and ServiceAccount
	// entries are gone.
	Finalizer = "regcred.dev/cleanup"

	// indexOwner indexes managed Secrets by owning credential key.
	indexOwner = "regcred.dev/owner"
	// indexSourceSecret indexes credentials by "namespace/name" of their
	// source Secret.
	indexSourceSecret = "regcred.dev/source-secret"
)

// AlwaysExcluded are namespaces a ClusterRegistryCredential never reaches.
var AlwaysExcluded = []string{"kube-system", "kube-public", "kube-node-lease"}

// Kinds.
const (
	KindCluster    = "ClusterRegistryCredential"
	KindNamespaced = "RegistryCredential"
)

// credential is either kind, seen the same way.
type credential struct {
	Kind      string
	Namespace string // empty for ClusterRegistryCredential
	Name      string
	Spec      *v1alpha1.CredentialSpec
	Status    *v1alpha1.CredentialStatus
	// NamespaceSelector and Exclude apply to ClusterRegistryCredentials.
	NamespaceSelector *metav1.LabelSelector
	Exclude           []string
	Object            client.Object
}

func fromCluster(c *v1alpha1.ClusterRegistryCredential) *credential {
	return &credential{Kind: KindCluster, Name: c.Name, Spec: &c.Spec.CredentialSpec, Status: &c.Status,
		NamespaceSelector: c.Spec.NamespaceSelector, Exclude: c.Spec.ExcludeNamespaces, Object: c}
}

func fromNamespaced(c *v1alpha1.RegistryCredential) *credential {
	return &credential{Kind: KindNamespaced, Namespace: c.Namespace, Name: c.Name, Spec: &c.Spec, Status: &c.Status, Object: c}
}

// getCredential reads a credential of either kind.
func getCredential(ctx context.Context, r client.Reader, kind, namespace, name string) (*credential, error) {
	switch kind {
	case KindCluster:
		var obj v1alpha1.ClusterRegistryCredential
		if err := r.Get(ctx, client.ObjectKey{Name: name}, &obj); err != nil {
			return nil, err
		}
		return fromCluster(&obj), nil
	case KindNamespaced:
		var obj v1alpha1.RegistryCredential
		if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &obj); err != nil {
			return nil, err
		}
		return fromNamespaced(&obj), nil
	default:
		return nil, fmt.Errorf("unknown credential kind %q", kind)
	}
}

// Key identifies the credential across kinds: "ClusterRegistryCredential/NAME"
// or "RegistryCredential/NAMESPACE/NAME".
func (c *credential) Key() string { return credentialKey(c.Kind, c.Namespace, c.Name) }

func credentialKey(kind, namespace, name string) string {
	if namespace == "" {
		return kind + "/" + name
	}
	return kind + "/" + namespace + "/" + name
}

// annotation is the value of AnnotationCredential on its Secrets; the
// namespace of a RegistryCredential is the Secret's own.
func (c *credential) annotation() string { return c.Kind + "/" + c.Name }

// ownerKey turns a managed Secret's annotation back into a credential key.
func ownerKey(secret *corev1.Secret) string {
	v := secret.Annotations[AnnotationCredential]
	kind, name, ok := strings.Cut(v, "/")
	if !ok || name == "" {
		return ""
	}
	switch kind {
	case KindCluster:
		return credentialKey(kind, "", name)
	case KindNamespaced:
		return credentialKey(kind, secret.Namespace, name)
	}
	return ""
}

// SecretName is the managed Secret's name.
func (c *credential) SecretName() string {
	if c.Spec.SecretName != "" {
		return c.Spec.SecretName
	}
	return "regcred-" + c.Name
}

func (c *credential) deleting() bool { return !c.Object.GetDeletionTimestamp().IsZero() }

// sourceNamespace is where the source Secret lives.
func (c *credential) sourceNamespace(regcredNamespace string) string {
	if c.Kind == KindCluster {
		return regcredNamespace
	}
	return c.Namespace
}

// appliesTo reports whether the credential should have its Secret in ns.
func (c *credential) appliesTo(ns *corev1.Namespace, regcredNamespace string) (bool, error) {
	scope, err := c.scope(regcredNamespace)
	if err != nil {
		return false, err
	}
	return scope.Applies(ns), nil
}

func (c *credential) scope(regcredNamespace string) (*Scope, error) {
	s := &Scope{kind: c.Kind, namespace: c.Namespace, regcredNamespace: regcredNamespace, deleting: c.deleting()}
	if c.Kind == KindCluster {
		s.exclude = c.Exclude
		if c.NamespaceSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(c.NamespaceSelector)
			if err != nil {
				return nil, fmt.Errorf("namespaceSelector: %w", err)
			}
			s.selector = sel
		}
	}
	return s, nil
}

// Scope is where a credential acts, with its selector parsed once. The
// controller and the admission webhook both decide with it.
type Scope struct {
	kind             string
	namespace        string
	regcredNamespace string
	selector         labels.Selector
	exclude          []string
	deleting         bool
}

// ScopeOf compiles the scope of a ClusterRegistryCredential or
// RegistryCredential.
func ScopeOf(obj client.Object, regcredNamespace string) (*Scope, error) {
	switch o := obj.(type) {
	case *v1alpha1.ClusterRegistryCredential:
		return fromCluster(o).scope(regcredNamespace)
	case *v1alpha1.RegistryCredential:
		return fromNamespaced(o).scope(regcredNamespace)
	default:
		return nil, fmt.Errorf("%T is not a credential", obj)
	}
}

// Applies reports whether the credential acts in ns.
func (s *Scope) Applies(ns *corev1.Namespace) bool {
	if s.deleting || ns.Status.Phase == corev1.NamespaceTerminating || !ns.DeletionTimestamp.IsZero() {
		return false
	}
	if s.kind == KindNamespaced {
		return ns.Name == s.namespace
	}
	if ns.Name == s.regcredNamespace || slices.Contains(AlwaysExcluded, ns.Name) || slices.Contains(s.exclude, ns.Name) {
		return false
	}
	return s.selector == nil || s.selector.Matches(labels.Set(ns.Labels))
}

// SecretNameOf is the managed Secret's name of a credential.
func SecretNameOf(obj client.Object) string {
	switch o := obj.(type) {
	case *v1alpha1.ClusterRegistryCredential:
		return fromCluster(o).SecretName()
	case *v1alpha1.RegistryCredential:
		return fromNamespaced(o).SecretName()
	}
	return ""
}

// selectsServiceAccount reports whether sa should list the Secret.
func (c *credential) selectsServiceAccount(sa *corev1.ServiceAccount) (bool, error) {
	switch c.Spec.ServiceAccounts.Mode {
	case v1alpha1.ServiceAccountsAll, "":
		return true, nil
	case v1alpha1.ServiceAccountsDefault:
		return sa.Name == "default", nil
	case v1alpha1.ServiceAccountsNone:
		return false, nil
	case v1alpha1.ServiceAccountsSelector:
		if c.Spec.ServiceAccounts.Selector == nil {
			return false, nil
		}
		sel, err := metav1.LabelSelectorAsSelector(c.Spec.ServiceAccounts.Selector)
		if err != nil {
			return false, fmt.Errorf("serviceAccounts.selector: %w", err)
		}
		return sel.Matches(labels.Set(sa.Labels)), nil
	default:
		return false, fmt.Errorf("unknown serviceAccounts.mode %q", c.Spec.ServiceAccounts.Mode)
	}
}
