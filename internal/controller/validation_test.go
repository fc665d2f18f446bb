package controller_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/api/v1alpha1"
)

// TestInvalidSpecsAreRejected: the API server itself refuses bad specs,
// with messages a person understands.
func TestInvalidSpecsAreRejected(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	c := suite.ControlPlane(t).Client
	base := func() *v1alpha1.ClusterRegistryCredential {
		return clusterCred("validation", "src", nil, "harbor.example.com")
	}
	for _, tc := range []struct {
		name   string
		mutate func(*v1alpha1.ClusterRegistryCredential)
		want   string
	}{
		{"no registries", func(c *v1alpha1.ClusterRegistryCredential) { c.Spec.Registries = nil }, "spec.registries"},
		{"registry with spaces", func(c *v1alpha1.ClusterRegistryCredential) { c.Spec.Registries = []string{"harbor example.com"} },
			"each registry must be a host, host:port or host/path prefix"},
		{"registry with a query", func(c *v1alpha1.ClusterRegistryCredential) { c.Spec.Registries = []string{"reg?stry.io"} },
			"each registry must be a host"},
		{"registry with a tag", func(c *v1alpha1.ClusterRegistryCredential) { c.Spec.Registries = []string{"ghcr.io/org/app:v1"} },
			"each registry must be a host"},
		{"no source", func(c *v1alpha1.ClusterRegistryCredential) { c.Spec.Source = v1alpha1.CredentialSource{} },
			"exactly one source must be set"},
		{"selector without Selector mode", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.ServiceAccounts = v1alpha1.ServiceAccountSelection{Mode: v1alpha1.ServiceAccountsAll, Selector: &metav1.LabelSelector{}}
		}, "selector is required when mode is Selector, and allowed only then"},
		{"Selector mode without selector", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.ServiceAccounts = v1alpha1.ServiceAccountSelection{Mode: v1alpha1.ServiceAccountsSelector}
		}, "selector is required when mode is Selector"},
		{"unknown mode", func(c *v1alpha1.ClusterRegistryCredential) { c.Spec.ServiceAccounts.Mode = "Some" }, `Unsupported value: "Some"`},
		{"bad secret name", func(c *v1alpha1.ClusterRegistryCredential) { c.Spec.SecretName = "Bad_Name" }, "secretName must be a valid Secret name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := base()
			tc.mutate(obj)
			err := c.Create(bg, obj)
			if err == nil {
				_ = c.Delete(bg, obj)
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}

	// Valid shapes are accepted, with defaults filled in.
	ok := base()
	ok.Name = "validation-ok"
	ok.Spec.Registries = []string{"harbor.example.com", "*.mirror.example.com:5000/team", "docker.io", "https://index.docker.io/v1/", "10.0.0.5:5000", "[::1]:5000/a"}
	if err := c.Create(bg, ok); err != nil {
		t.Fatalf("valid credential rejected: %v", err)
	}
	defer func() { _ = c.Delete(bg, ok) }()
	if ok.Spec.ServiceAccounts.Mode != v1alpha1.ServiceAccountsAll || !ok.Spec.PodInjection.InjectionEnabled() || ok.Spec.PodInjection.Enabled == nil {
		t.Errorf("defaults not applied: %+v %+v", ok.Spec.ServiceAccounts, ok.Spec.PodInjection)
	}
}
