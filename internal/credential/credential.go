// Package credential is the model of a registry credential that every
// front end shares — the controller, the admission webhook, the CLI and the
// offline manifest tools: the two kinds and their typed keys, regcred's
// labels and annotations, where a credential acts (its scope), the name of
// its managed Secret, and which images it is for (its matcher). It reads
// the API types and talks to nothing: no Kubernetes client.
package credential

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/keyring"
)

// Labels, annotations and finalizer regcred owns.
const (
	// LabelManaged marks the Secrets regcred maintains. The manager's cache
	// holds only Secrets with this label.
	LabelManaged = "regcred.dev/managed"
	// AnnotationCredential on a managed Secret names the credential it was
	// rendered from: "ClusterRegistryCredential/NAME" or
	// "RegistryCredential/NAME" (the Secret's namespace is the
	// RegistryCredential's).
	AnnotationCredential = "regcred.dev/credential"
	// AnnotationPullSecrets on a ServiceAccount lists the imagePullSecrets
	// entries regcred added, so cleanup removes those and nothing else.
	AnnotationPullSecrets = "regcred.dev/pull-secrets"
	// Finalizer holds a credential until its Secrets and ServiceAccount
	// entries are gone.
	Finalizer = "regcred.dev/cleanup"
	// LabelInject set to "false" on a namespace or a Pod opts it out of the
	// admission webhook.
	LabelInject = "regcred.dev/inject"
	// AnnotationTokenAudiences on a ServiceAccount opts it in to web
	// identity tokens: a comma-separated list of the audiences regcred
	// may mint its tokens for. Without it regcred mints none.
	AnnotationTokenAudiences = "regcred.dev/token-audiences"
)

// AlwaysExcluded are namespaces a ClusterRegistryCredential never reaches
// and the webhook never sees, besides regcred's own.
var AlwaysExcluded = []string{"kube-system", "kube-public", "kube-node-lease"}

// Kind is one of the two credential kinds.
type Kind string

// The kinds.
const (
	KindCluster    Kind = "ClusterRegistryCredential"
	KindNamespaced Kind = "RegistryCredential"
)

// Key identifies a credential across kinds.
type Key struct {
	Kind      Kind
	Namespace string // empty for a ClusterRegistryCredential
	Name      string
}

// String is "ClusterRegistryCredential/NAME" or
// "RegistryCredential/NAMESPACE/NAME": for logs, messages and indexes.
func (k Key) String() string {
	if k.Namespace == "" {
		return string(k.Kind) + "/" + k.Name
	}
	return string(k.Kind) + "/" + k.Namespace + "/" + k.Name
}

// Display is how a person reads the credential on a Pod: the name of a
// ClusterRegistryCredential, namespace/name of a RegistryCredential.
func (k Key) Display() string {
	if k.Kind == KindNamespaced {
		return k.Namespace + "/" + k.Name
	}
	return k.Name
}

// annotation is the value of AnnotationCredential on its Secrets.
func (k Key) annotation() string { return string(k.Kind) + "/" + k.Name }

// OwnerOf turns a managed Secret's annotation back into the key of the
// credential it was rendered from.
func OwnerOf(secret *corev1.Secret) (Key, bool) {
	kind, name, ok := strings.Cut(secret.Annotations[AnnotationCredential], "/")
	if !ok || name == "" {
		return Key{}, false
	}
	switch Kind(kind) {
	case KindCluster:
		return Key{Kind: KindCluster, Name: name}, true
	case KindNamespaced:
		return Key{Kind: KindNamespaced, Namespace: secret.Namespace, Name: name}, true
	}
	return Key{}, false
}

// Owns reports whether secret is really the credential's: the managed
// label, the owner annotation and an owner reference to this very object
// (by UID) all agree. Anyone who can write Secrets in a namespace can set
// a label or an annotation; the UID names one live object, so a Secret
// that lacks it was not written by regcred for this credential and is
// never updated or deleted for it.
func (c *Credential) Owns(secret *corev1.Secret) bool {
	if secret == nil || secret.Labels[LabelManaged] != "true" {
		return false
	}
	if key, ok := OwnerOf(secret); !ok || key != c.Key {
		return false
	}
	uid := c.Object.GetUID()
	if uid == "" {
		return false
	}
	for _, ref := range secret.OwnerReferences {
		if ref.UID == uid && ref.Kind == string(c.Kind) && ref.Name == c.Name {
			return true
		}
	}
	return false
}

// Credential is either kind, seen the same way.
type Credential struct {
	Key
	Spec   *v1alpha1.CredentialSpec
	Status *v1alpha1.CredentialStatus
	// NamespaceSelector and Exclude apply to ClusterRegistryCredentials.
	NamespaceSelector *metav1.LabelSelector
	Exclude           []string
	// Object is the API object: *v1alpha1.ClusterRegistryCredential or
	// *v1alpha1.RegistryCredential.
	Object Object
}

// Object is an API object with metadata (what controller-runtime calls a
// client.Object).
type Object interface {
	metav1.Object
	runtime.Object
}

// FromCluster views a ClusterRegistryCredential.
func FromCluster(c *v1alpha1.ClusterRegistryCredential) *Credential {
	return &Credential{Key: Key{Kind: KindCluster, Name: c.Name}, Spec: &c.Spec.CredentialSpec, Status: &c.Status,
		NamespaceSelector: c.Spec.NamespaceSelector, Exclude: c.Spec.ExcludeNamespaces, Object: c}
}

// FromNamespaced views a RegistryCredential.
func FromNamespaced(c *v1alpha1.RegistryCredential) *Credential {
	return &Credential{Key: Key{Kind: KindNamespaced, Namespace: c.Namespace, Name: c.Name}, Spec: &c.Spec, Status: &c.Status, Object: c}
}

// From views either kind.
func From(obj any) (*Credential, error) {
	switch o := obj.(type) {
	case *v1alpha1.ClusterRegistryCredential:
		return FromCluster(o), nil
	case *v1alpha1.RegistryCredential:
		return FromNamespaced(o), nil
	default:
		return nil, fmt.Errorf("%T is not a credential", obj)
	}
}

// Annotation is the value of AnnotationCredential on its managed Secrets.
func (c *Credential) Annotation() string { return c.Key.annotation() }

// SecretName is the managed Secret's name.
func (c *Credential) SecretName() string {
	if c.Spec.SecretName != "" {
		return c.Spec.SecretName
	}
	return DefaultSecretName(c.Name)
}

// maxSecretName is the longest object name (a DNS subdomain).
const maxSecretName = 253

// DefaultSecretName is "regcred-" + the credential's name. A credential's
// name may itself be 253 characters long, so a name that would be longer
// than a Secret's may be is cut and ends in a hash of the whole name:
// still deterministic, still a valid DNS subdomain, and two long names
// that differ only past the cut do not collide.
func DefaultSecretName(credentialName string) string {
	name := "regcred-" + credentialName
	if len(name) <= maxSecretName {
		return name
	}
	sum := sha256.Sum256([]byte(credentialName))
	suffix := "-" + hex.EncodeToString(sum[:])[:12]
	// The cut may leave a '.' or '-' at the end; a label must end with a
	// letter or digit.
	head := strings.TrimRight(name[:maxSecretName-len(suffix)], ".-")
	return head + suffix
}

// Deleting reports whether the credential is being deleted.
func (c *Credential) Deleting() bool { return !c.Object.GetDeletionTimestamp().IsZero() }

// SourceNamespace is where the source Secret lives: regcred's namespace
// for a ClusterRegistryCredential, its own for a RegistryCredential.
func (c *Credential) SourceNamespace(regcredNamespace string) string {
	if c.Kind == KindCluster {
		return regcredNamespace
	}
	return c.Namespace
}

// DeliversSecrets reports whether the credential is delivered as pull
// Secrets: copies in namespaces, ServiceAccount entries, Pod injection.
func (c *Credential) DeliversSecrets() bool { return c.Spec.Delivery.ToSecrets() }

// DeliversToNodes reports whether the kubelet credential broker serves it.
func (c *Credential) DeliversToNodes() bool { return c.Spec.Delivery.ToNodes() }

// InjectionEnabled reports whether the webhook adds the Secret to Pods, and
// the manifest tools to workloads: never for delivery Node, which has no
// Secret.
func (c *Credential) InjectionEnabled() bool {
	return c.DeliversSecrets() && c.Spec.PodInjection.InjectionEnabled()
}

// Scope compiles where the credential acts, its selector parsed once.
func (c *Credential) Scope(regcredNamespace string) (*Scope, error) {
	s := &Scope{kind: c.Kind, namespace: c.Namespace, regcredNamespace: regcredNamespace, deleting: c.Deleting()}
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

// Scope is where a credential acts. The controller and the admission
// webhook both decide with it.
type Scope struct {
	kind             Kind
	namespace        string
	regcredNamespace string
	selector         labels.Selector
	exclude          []string
	deleting         bool
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

// Matcher decides, with the kubelet's own rules, whether a credential's
// registries cover an image.
type Matcher struct {
	keyring *keyring.Keyring
}

// NewMatcher compiles registry keys. Keys the kubelet would not accept are
// returned (the rest still match).
func NewMatcher(name string, registries []string) (*Matcher, []string) {
	entries := make(map[string]dockercfg.Entry, len(registries))
	for _, r := range registries {
		entries[r] = dockercfg.Entry{}
	}
	kr := &keyring.Keyring{}
	bad := kr.Add(name, &dockercfg.Config{Auths: entries})
	return &Matcher{keyring: kr}, bad
}

// Matches reports whether the kubelet would try the credential for the
// target.
func (m *Matcher) Matches(t keyring.Target) bool { return m.keyring.Matches(t) }

// Matcher compiles the credential's registries.
func (c *Credential) Matcher() (*Matcher, []string) {
	return NewMatcher(c.Key.String(), c.Spec.Registries)
}

// Scheme holds the built-in types and regcred's: what every client of
// regcred's objects decodes with.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}
