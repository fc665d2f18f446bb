package manifests

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
)

// CredentialObjects are the RegistryCredentials and
// ClusterRegistryCredentials offline injection draws from: read from
// files, listed from a cluster (by the caller), or both.
type CredentialObjects struct {
	Cluster    []v1alpha1.ClusterRegistryCredential
	Namespaced []v1alpha1.RegistryCredential
	// Namespaces are the namespaces whose labels a
	// ClusterRegistryCredential's namespaceSelector reads. Another
	// namespace has only the label the API server gives every namespace,
	// kubernetes.io/metadata.name.
	Namespaces []corev1.Namespace
}

// Decode adds the credential objects and the Namespaces of docs; other
// documents are skipped.
func (o *CredentialObjects) Decode(docs []*Document) error {
	if err := DecodeKind(docs, "ClusterRegistryCredential", &o.Cluster); err != nil {
		return err
	}
	if err := o.DecodeNamespaces(docs); err != nil {
		return err
	}
	return DecodeKind(docs, "RegistryCredential", &o.Namespaced)
}

// DecodeNamespaces adds the Namespaces of docs (their labels) and nothing
// else.
func (o *CredentialObjects) DecodeNamespaces(docs []*Document) error {
	for _, d := range docs {
		n, err := d.Parse()
		if err != nil {
			return err
		}
		if n == nil || n.GetKind() != "Namespace" || n.GetApiVersion() != "v1" {
			continue
		}
		j, err := n.MarshalJSON()
		if err != nil {
			return fmt.Errorf("document %d: %w", d.Index, err)
		}
		var ns corev1.Namespace
		if err := sigsyaml.Unmarshal(j, &ns); err != nil {
			return fmt.Errorf("document %d: Namespace: %v", d.Index, err)
		}
		o.Namespaces = append(o.Namespaces, ns)
	}
	return nil
}

// Injectable are the credentials the webhook would add to Pods, each
// only in the namespaces where it acts (a RegistryCredential in its own;
// a ClusterRegistryCredential by its namespaceSelector and
// excludeNamespaces, never in regcredNamespace nor the always-excluded
// ones), and how many were left out because their podInjection is off or
// they are delivered to nodes only. A credential whose selector does not
// parse is an error, as the controller refuses it.
func (o *CredentialObjects) Injectable(regcredNamespace string) (creds []Credential, disabled int, err error) {
	namespace := o.namespaces()
	var objects []*credential.Credential
	for i := range o.Cluster {
		objects = append(objects, credential.FromCluster(&o.Cluster[i]))
	}
	for i := range o.Namespaced {
		objects = append(objects, credential.FromNamespaced(&o.Namespaced[i]))
	}
	for _, c := range objects {
		// As the webhook does: a credential with injection turned off, or
		// delivered to nodes only, is never added to workloads.
		if !c.InjectionEnabled() {
			disabled++
			continue
		}
		scope, err := c.Scope(regcredNamespace)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", c.Key.Display(), err)
		}
		creds = append(creds, Credential{SecretName: c.SecretName(), Registries: c.Spec.Registries,
			Applies: func(ns string) bool { return scope.Applies(namespace(ns)) }})
	}
	return creds, disabled, nil
}

// Namespace looks namespaces up as selectors see them (see namespaces).
func (o *CredentialObjects) Namespace() func(name string) *corev1.Namespace { return o.namespaces() }

// namespaces looks a namespace up as the selectors see it: its labels
// when it is known, and kubernetes.io/metadata.name, which the API server
// gives every namespace. The index is built once: a cluster's namespaces
// are looked up for every workload and credential of a stream.
func (o *CredentialObjects) namespaces() func(name string) *corev1.Namespace {
	byName := make(map[string]*corev1.Namespace, len(o.Namespaces))
	for i := range o.Namespaces {
		ns := o.Namespaces[i].DeepCopy()
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[corev1.LabelMetadataName] = ns.Name
		byName[ns.Name] = ns
	}
	return func(name string) *corev1.Namespace {
		if ns, ok := byName[name]; ok {
			return ns
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelMetadataName: name}}}
		byName[name] = ns
		return ns
	}
}

// Skip says, as the webhook's registration and handler decide, which
// workloads the webhook never touches: those in regcredNamespace or an
// always-excluded namespace, and those whose Pods or namespace carry
// regcred.dev/inject=false.
func (o *CredentialObjects) Skip(regcredNamespace string) func(namespace string, podLabels map[string]string) bool {
	lookup := o.namespaces()
	return func(namespace string, podLabels map[string]string) bool {
		if namespace == regcredNamespace || slices.Contains(credential.AlwaysExcluded, namespace) || podLabels[credential.LabelInject] == "false" {
			return true
		}
		return lookup(namespace).Labels[credential.LabelInject] == "false"
	}
}

// DecodeKind decodes every document of the given kind in group
// regcred.dev into out (a pointer to a slice of that type).
func DecodeKind[T any](docs []*Document, kind string, out *[]T) error {
	for _, d := range docs {
		n, err := d.Parse()
		if err != nil {
			return err
		}
		if n == nil || n.GetKind() != kind || !strings.HasPrefix(n.GetApiVersion(), v1alpha1.GroupVersion.Group+"/") {
			continue
		}
		j, err := n.MarshalJSON()
		if err != nil {
			return fmt.Errorf("document %d: %w", d.Index, err)
		}
		var obj T
		if err := sigsyaml.Unmarshal(j, &obj); err != nil {
			return fmt.Errorf("document %d: %s: %v", d.Index, kind, err)
		}
		*out = append(*out, obj)
	}
	return nil
}
