package credential

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/api/v1alpha1"
)

// benchCredentials are 20 ClusterRegistryCredentials with a namespace
// selector each, as a cluster shared by teams has them.
func benchCredentials() []*v1alpha1.ClusterRegistryCredential {
	out := make([]*v1alpha1.ClusterRegistryCredential, 20)
	for i := range out {
		c := clusterCred(fmt.Sprintf("cred-%02d", i), fmt.Sprintf("registry%02d.example.com", i), fmt.Sprintf("*.mirror%02d.example.com:5000/team", i))
		c.Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b", fmt.Sprint(i)}}}}
		out[i] = c
	}
	return out
}

var benchNamespace = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"team": "a"}}}

// BenchmarkScopePerNamespace is what deciding which credentials act in a
// namespace cost before the catalogue: every credential's selector
// parsed again for every namespace reconcile.
func BenchmarkScopePerNamespace(b *testing.B) {
	creds := benchCredentials()
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for _, c := range creds {
			scope, err := FromCluster(c).Scope("regcred-system")
			if err != nil {
				b.Fatal(err)
			}
			if scope.Applies(benchNamespace) {
				n++
			}
		}
		if n != 20 {
			b.Fatal(n)
		}
	}
}

// BenchmarkCatalogueActing is the same question asked of the catalogue,
// where each selector was compiled once.
func BenchmarkCatalogueActing(b *testing.B) {
	cat := NewCatalogue("regcred-system")
	for _, c := range benchCredentials() {
		cat.Put(c)
	}
	b.ReportAllocs()
	for b.Loop() {
		if n := len(cat.Acting(benchNamespace)); n != 20 {
			b.Fatal(n)
		}
	}
}

// BenchmarkCatalogueStatusWrite is a status write reaching the catalogue
// (every token refresh and namespace count): no compilation.
func BenchmarkCatalogueStatusWrite(b *testing.B) {
	cat := NewCatalogue("regcred-system")
	creds := benchCredentials()
	for _, c := range creds {
		cat.Put(c)
	}
	updated := creds[7].DeepCopy()
	updated.Status.Namespaces.Synced = 3
	b.ReportAllocs()
	for b.Loop() {
		cat.Put(updated)
	}
	if cat.Compiles() != int64(len(creds)) {
		b.Fatalf("%d compilations, want %d", cat.Compiles(), len(creds))
	}
}
