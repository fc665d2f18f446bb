package controller

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/internal/credential"
)

func sa(tracked string, names ...string) *corev1.ServiceAccount {
	s := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if tracked != "" {
		s.Annotations = map[string]string{credential.AnnotationPullSecrets: tracked}
	}
	for _, n := range names {
		s.ImagePullSecrets = append(s.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
	}
	return s
}

func TestApplyPullSecrets(t *testing.T) {
	for _, tc := range []struct {
		name        string
		in          *corev1.ServiceAccount
		want        []string
		wantNames   []string
		wantTracked string
		changed     bool
	}{
		{"add to empty", sa(""), []string{"regcred-a"}, []string{"regcred-a"}, "regcred-a", true},
		{"keep others, append ours sorted", sa("", "user-1", "user-2"), []string{"regcred-b", "regcred-a"}, []string{"user-1", "user-2", "regcred-a", "regcred-b"}, "regcred-a,regcred-b", true},
		{"nothing to do", sa("regcred-a", "user", "regcred-a"), []string{"regcred-a"}, []string{"user", "regcred-a"}, "regcred-a", false},
		{"remove ours only", sa("regcred-a,regcred-b", "user", "regcred-a", "regcred-b"), []string{"regcred-b"}, []string{"user", "regcred-b"}, "regcred-b", true},
		{"remove all ours drops the annotation", sa("regcred-a", "regcred-a", "user"), nil, []string{"user"}, "", true},
		{"a user's entry of the same name is not ours", sa("", "regcred-a"), []string{"regcred-a"}, []string{"regcred-a"}, "", false},
		{"a user's entry is never removed", sa("", "regcred-a"), nil, []string{"regcred-a"}, "", false},
		{"drift: our entry removed by someone is restored", sa("regcred-a", "user"), []string{"regcred-a"}, []string{"user", "regcred-a"}, "regcred-a", true},
		{"duplicates of ours collapse", sa("regcred-a", "regcred-a", "user", "regcred-a"), []string{"regcred-a"}, []string{"regcred-a", "user"}, "regcred-a", true},
		{"user duplicates are kept", sa("", "user", "user"), nil, []string{"user", "user"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := map[string]bool{}
			for _, w := range tc.want {
				want[w] = true
			}
			before := tc.in.DeepCopy()
			out, changed := applyPullSecrets(tc.in, want)
			if changed != tc.changed {
				t.Errorf("changed = %t, want %t", changed, tc.changed)
			}
			var names []string
			for _, r := range out.ImagePullSecrets {
				names = append(names, r.Name)
			}
			if !slices.Equal(names, tc.wantNames) {
				t.Errorf("imagePullSecrets = %v, want %v", names, tc.wantNames)
			}
			if got := out.Annotations[credential.AnnotationPullSecrets]; got != tc.wantTracked {
				t.Errorf("tracked = %q, want %q", got, tc.wantTracked)
			}
			if !slices.Equal(before.ImagePullSecrets, tc.in.ImagePullSecrets) {
				t.Error("input modified")
			}
			// Applying again changes nothing: idempotent.
			if _, again := applyPullSecrets(out, want); again {
				t.Error("second application changed the ServiceAccount again")
			}
		})
	}
}

func TestFailuresNotify(t *testing.T) {
	f := newFailures()
	var notified []credential.Key
	k := credential.Key{Kind: credential.KindCluster, Name: "k"}
	if !f.set(k, "ns1", "boom") {
		t.Error("new failure not reported as new")
	}
	f.notify[credential.KindCluster] = func(k credential.Key) { notified = append(notified, k) }
	if f.set(k, "ns1", "boom") {
		t.Error("same failure reported as new")
	}
	f.set(k, "ns2", "other")
	f.clearNamespace("ns1")
	got := f.get(k, func(string) bool { return true })
	if len(got) != 1 || got[0].Namespace != "ns2" {
		t.Errorf("failures %v", got)
	}
	if !slices.Equal(notified, []credential.Key{k, k}) {
		t.Errorf("notified %v", notified)
	}
	if len(f.pending[credential.KindCluster]) != 1 {
		t.Errorf("pending before the source started: %v", f.pending)
	}
}
