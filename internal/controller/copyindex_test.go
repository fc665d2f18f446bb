package controller

import (
	"slices"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/internal/credential"
)

func managedCopy(ns, name, owner string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{credential.LabelManaged: "true"}}}
	if owner != "" {
		s.Annotations = map[string]string{credential.AnnotationCredential: owner}
	}
	return s
}

func indexed(ix *copyIndex, key credential.Key) []string {
	var out []string
	ix.each(key, func(s *corev1.Secret) { out = append(out, s.Namespace+"/"+s.Name) })
	sort.Strings(out)
	return out
}

func TestCopyIndex(t *testing.T) {
	a := credential.Key{Kind: credential.KindCluster, Name: "a"}
	b := credential.Key{Kind: credential.KindCluster, Name: "b"}
	ix := newCopyIndex(credential.KindCluster)

	steps := []struct {
		name   string
		secret *corev1.Secret // nil: deleted
		wake   []credential.Key
		a, b   []string
	}{
		{"a's copy in ns1", managedCopy("ns1", "regcred-a", "ClusterRegistryCredential/a"), []credential.Key{a}, []string{"ns1/regcred-a"}, nil},
		{"a's copy in ns2", managedCopy("ns2", "regcred-a", "ClusterRegistryCredential/a"), []credential.Key{a}, []string{"ns1/regcred-a", "ns2/regcred-a"}, nil},
		{"ns2's copy handed to b", managedCopy("ns2", "regcred-a", "ClusterRegistryCredential/b"), []credential.Key{a, b}, []string{"ns1/regcred-a"}, []string{"ns2/regcred-a"}},
		{"ns2's copy loses its owner", managedCopy("ns2", "regcred-a", ""), []credential.Key{b}, []string{"ns1/regcred-a"}, nil},
		{"a namespaced credential's copy is another kind's", managedCopy("ns3", "regcred-c", "RegistryCredential/ns3/c"), nil, []string{"ns1/regcred-a"}, nil},
		{"ns1's copy deleted", nil, []credential.Key{a}, nil, nil},
	}
	prev := map[string]*corev1.Secret{}
	for _, st := range steps {
		name := "ns1/regcred-a"
		if st.secret != nil {
			name = st.secret.Namespace + "/" + st.secret.Name
		}
		wake := ix.set(prev[name], st.secret)
		prev[name] = st.secret
		if !slices.Equal(wake, st.wake) {
			t.Errorf("%s: woke %v, want %v", st.name, wake, st.wake)
		}
		if got := indexed(ix, a); !slices.Equal(got, st.a) {
			t.Errorf("%s: a's copies %v, want %v", st.name, got, st.a)
		}
		if got := indexed(ix, b); !slices.Equal(got, st.b) {
			t.Errorf("%s: b's copies %v, want %v", st.name, got, st.b)
		}
	}
	if len(ix.byOwner) != 0 {
		t.Errorf("index not empty after every copy went: %v", ix.byOwner)
	}
}
