package credential

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"regcred.dev/regcred/api/v1alpha1"
)

func TestOwns(t *testing.T) {
	obj := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "harbor", UID: "uid-1"}}
	c := FromCluster(obj)
	tenant := FromNamespaced(&v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "t", Name: "harbor", UID: "uid-2"}})
	secret := func(label, annotation string, refs ...metav1.OwnerReference) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "t", Name: "regcred-harbor", OwnerReferences: refs,
			Labels: map[string]string{}, Annotations: map[string]string{}}}
		if label != "" {
			s.Labels[LabelManaged] = label
		}
		if annotation != "" {
			s.Annotations[AnnotationCredential] = annotation
		}
		return s
	}
	ref := func(kind, name string, uid types.UID) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: "regcred.dev/v1alpha1", Kind: kind, Name: name, UID: uid}
	}
	own := ref("ClusterRegistryCredential", "harbor", "uid-1")
	for _, tc := range []struct {
		name string
		c    *Credential
		s    *corev1.Secret
		want bool
	}{
		{"all three agree", c, secret("true", "ClusterRegistryCredential/harbor", own), true},
		{"among other owners", c, secret("true", "ClusterRegistryCredential/harbor", ref("ConfigMap", "x", "u"), own), true},
		{"label only", c, secret("true", ""), false},
		{"label and forged annotation", c, secret("true", "ClusterRegistryCredential/harbor"), false},
		{"foreign owner reference", c, secret("true", "ClusterRegistryCredential/harbor", ref("ClusterRegistryCredential", "harbor", "uid-old")), false},
		{"owner reference by name, other kind", c, secret("true", "ClusterRegistryCredential/harbor", ref("RegistryCredential", "harbor", "uid-1")), false},
		{"label missing", c, secret("", "ClusterRegistryCredential/harbor", own), false},
		{"label false", c, secret("false", "ClusterRegistryCredential/harbor", own), false},
		{"annotation of another credential", tenant, secret("true", "ClusterRegistryCredential/harbor", own), false},
		{"tenant's own", tenant, secret("true", "RegistryCredential/harbor", ref("RegistryCredential", "harbor", "uid-2")), true},
		{"nil", c, nil, false},
	} {
		if got := tc.c.Owns(tc.s); got != tc.want {
			t.Errorf("%s: Owns = %v, want %v", tc.name, got, tc.want)
		}
	}
}
