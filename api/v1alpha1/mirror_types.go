package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MirrorRule points pulls from a source registry (optionally a path under
// it) at a mirror.
type MirrorRule struct {
	// Source is a registry host, optionally with a repository path prefix:
	// "docker.io", "docker.io/bitnami", "ghcr.io/acme". Docker Hub's
	// aliases (index.docker.io, registry-1.docker.io) mean docker.io.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^(localhost|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\\\\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+)(:[0-9]{1,5})?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*/?$')",message="source must be a registry host with an optional repository path, like docker.io or ghcr.io/acme (no scheme, no tag)"
	Source string `json:"source"`
	// Mirror is the registry host and optional path prefix the images are
	// copied to: "harbor.internal/dockerhub". The rest of the repository
	// path, the tag and the digest are kept.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^(localhost|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\\\\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+)(:[0-9]{1,5})?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*/?$')",message="mirror must be a registry host with an optional repository path, like harbor.internal/dockerhub (no scheme, no tag)"
	Mirror string `json:"mirror"`
}

// ClusterImageMirrorSpec lists mirror rules.
type ClusterImageMirrorSpec struct {
	// Mirrors are the rules. For each image the most specific matching
	// source (the most path segments) wins.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	Mirrors []MirrorRule `json:"mirrors"`
	// NamespaceSelector limits the rules to Pods in matching namespaces.
	// Default: every namespace the webhook sees.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// ClusterImageMirror rewrites Pod images to mirrors at admission, and is
// read by `regcred manifests rewrite` for the same rewrite offline.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cim,categories=regcred
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterImageMirror struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ClusterImageMirrorSpec `json:"spec"`
}

// ClusterImageMirrorList is a list of ClusterImageMirrors.
//
// +kubebuilder:object:root=true
type ClusterImageMirrorList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterImageMirror `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ClusterImageMirror{}, &ClusterImageMirrorList{})
}
