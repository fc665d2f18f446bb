package credential

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCredentialScopeApplies(t *testing.T) {
	ns := func(name string, labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	}
	cluster := &Credential{Key: Key{Kind: KindCluster, Name: "c"}, Object: &corev1.Secret{}, Exclude: []string{"skip"},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}}
	everywhere := &Credential{Key: Key{Kind: KindCluster, Name: "c"}, Object: &corev1.Secret{}}
	tenant := &Credential{Key: Key{Kind: KindNamespaced, Namespace: "t", Name: "c"}, Object: &corev1.Secret{}}
	terminating := ns("x", nil)
	terminating.Status.Phase = corev1.NamespaceTerminating
	for _, tc := range []struct {
		c    *Credential
		ns   *corev1.Namespace
		want bool
	}{
		{cluster, ns("a", map[string]string{"team": "a"}), true},
		{cluster, ns("b", map[string]string{"team": "b"}), false},
		{cluster, ns("skip", map[string]string{"team": "a"}), false},
		{everywhere, ns("anything", nil), true},
		{everywhere, ns("kube-system", nil), false},
		{everywhere, ns("regcred-system", nil), false},
		{everywhere, terminating, false},
		{tenant, ns("t", nil), true},
		{tenant, ns("other", nil), false},
	} {
		scope, err := tc.c.Scope("regcred-system")
		got := err == nil && scope.Applies(tc.ns)
		if err != nil || got != tc.want {
			t.Errorf("%s in %s: %t, %v; want %t", tc.c.Key, tc.ns.Name, got, err, tc.want)
		}
	}
}
