package credential

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"regcred.dev/regcred/api/v1alpha1"
)

// TestDefaultSecretName: whatever a credential's name, its default Secret
// name is a valid Secret name, the same every time, and two long names do
// not collide.
func TestDefaultSecretName(t *testing.T) {
	long := func(n int, fill string) string { return strings.Repeat(fill, n)[:n] }
	cases := []struct {
		name, credential string
		want             string // "" when only validity is checked
	}{
		{name: "short", credential: "dockerhub", want: "regcred-dockerhub"},
		{name: "longest kept whole", credential: long(245, "a"), want: "regcred-" + long(245, "a")},
		{name: "one too long", credential: long(246, "a")},
		{name: "max length", credential: long(253, "a")},
		{name: "cut lands on a dot", credential: long(253, "abcdefghi.")},
		{name: "cut lands on a dash", credential: long(253, "ab-")},
		{name: "dots and dashes", credential: long(253, "a-b.c")},
	}
	seen := map[string]string{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := DefaultSecretName(tc.credential)
			if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
				t.Errorf("DefaultSecretName(%d chars) = %q (%d chars): not a valid Secret name: %v", len(tc.credential), got, len(got), errs)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("DefaultSecretName(%q) = %q, want %q", tc.credential, got, tc.want)
			}
			if again := DefaultSecretName(tc.credential); again != got {
				t.Errorf("not deterministic: %q, then %q", got, again)
			}
			if !strings.HasPrefix(got, "regcred-") {
				t.Errorf("%q does not start with regcred-", got)
			}
			if other, dup := seen[got]; dup && other != tc.credential {
				t.Errorf("%q is the Secret name of two credentials", got)
			}
			seen[got] = tc.credential
		})
	}
	// Names that differ only past the cut get different Secrets.
	a, b := DefaultSecretName(long(252, "a")+"b"), DefaultSecretName(long(252, "a")+"c")
	if a == b {
		t.Errorf("two credentials that differ in their last character share the Secret %q", a)
	}
	c := &Credential{Key: Key{Kind: KindCluster, Name: long(253, "x")}, Spec: &v1alpha1.CredentialSpec{}}
	if got := c.SecretName(); got != DefaultSecretName(c.Name) {
		t.Errorf("SecretName() = %q, want the default %q", got, DefaultSecretName(c.Name))
	}
}
