package manifests

import (
	"fmt"
	"strings"

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
}

// Decode adds the credential objects of docs; other documents are skipped.
func (o *CredentialObjects) Decode(docs []*Document) error {
	if err := DecodeKind(docs, "ClusterRegistryCredential", &o.Cluster); err != nil {
		return err
	}
	return DecodeKind(docs, "RegistryCredential", &o.Namespaced)
}

// Injectable are the credentials the webhook would add to Pods, and how
// many were left out because their podInjection is off or they are
// delivered to nodes only.
func (o *CredentialObjects) Injectable() (creds []Credential, disabled int) {
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
		creds = append(creds, Credential{SecretName: c.SecretName(), Registries: c.Spec.Registries})
	}
	return creds, disabled
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
