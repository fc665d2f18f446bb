package controller_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv"
)

// TestInvalidSpecsAreRejected: the API server itself refuses bad specs,
// with messages a person understands.
func TestInvalidSpecsAreRejected(t *testing.T) {
	testenv.SkipShort(t, "integration test")
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
		{"verify interval too short", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Verify = &v1alpha1.Verify{Image: "r.io/app:1", Interval: metav1.Duration{Duration: 30 * time.Second}}
		}, "verify.interval must be at least 1m"},
		{"verify without image", func(c *v1alpha1.ClusterRegistryCredential) { c.Spec.Verify = &v1alpha1.Verify{} }, "spec.verify.image"},
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
		{"two sources", func(c *v1alpha1.ClusterRegistryCredential) { c.Spec.Source.GCP = &v1alpha1.GCPSource{} },
			"exactly one source must be set: secretRef, ecr, gcp, acr or credentialProvider"},
		{"ecr without region", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Source = v1alpha1.CredentialSource{ECR: &v1alpha1.ECRSource{}}
		}, "region is required for private ECR"},
		{"ecr bad region", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Source = v1alpha1.CredentialSource{ECR: &v1alpha1.ECRSource{Region: "Mars"}}
		}, "spec.source.ecr.region"},
		{"ecr bad registry id", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Source = v1alpha1.CredentialSource{ECR: &v1alpha1.ECRSource{Region: "eu-west-1", RegistryIDs: []string{"12345"}}}
		}, "spec.source.ecr.registryIds[0]"},
		{"ecr plain http endpoint", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Source = v1alpha1.CredentialSource{ECR: &v1alpha1.ECRSource{Region: "eu-west-1", Endpoint: "http://ecr.example.com"}}
		}, "spec.source.ecr.endpoint"},
		{"two identities", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Source = v1alpha1.CredentialSource{GCP: &v1alpha1.GCPSource{Identity: v1alpha1.CloudIdentity{
				SecretRef: &v1alpha1.SecretReference{Name: "k"}, WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: "sa", Audience: "a"}}}}
		}, "set secretRef or webIdentity, not both"},
		{"web identity without audience", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Source = v1alpha1.CredentialSource{GCP: &v1alpha1.GCPSource{Identity: v1alpha1.CloudIdentity{
				WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: "sa"}}}}
		}, "spec.source.gcp.identity.webIdentity.audience"},
		{"bad role ARN", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Source = v1alpha1.CredentialSource{ECR: &v1alpha1.ECRSource{Region: "eu-west-1", Identity: v1alpha1.CloudIdentity{
				WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: "sa", Audience: "sts.amazonaws.com", RoleARN: "role/puller"}}}}
		}, "spec.source.ecr.identity.webIdentity.roleARN"},
		{"acr without registry", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Source = v1alpha1.CredentialSource{ACR: &v1alpha1.ACRSource{}}
		}, "spec.source.acr.registry"},
		{"relative plugin path", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Source = v1alpha1.CredentialSource{CredentialProvider: &v1alpha1.CredentialProviderSource{Command: "ecr-credential-provider"}}
		}, "spec.source.credentialProvider.command"},
		{"unknown delivery", func(c *v1alpha1.ClusterRegistryCredential) { c.Spec.Delivery = "Kubelet" }, `Unsupported value: "Kubelet"`},
		{"delivery Node to no ServiceAccount", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Delivery = v1alpha1.DeliveryNode
			c.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
		}, "spec.serviceAccounts.mode None selects no ServiceAccount, so delivery Node or Both would serve none"},
		{"delivery Both to no ServiceAccount", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Delivery = v1alpha1.DeliveryBoth
			c.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
		}, "delivery Node or Both would serve none"},
		{"bad plugin env name", func(c *v1alpha1.ClusterRegistryCredential) {
			c.Spec.Source = v1alpha1.CredentialSource{CredentialProvider: &v1alpha1.CredentialProviderSource{Command: "/plugins/p",
				Env: []v1alpha1.EnvVar{{Name: "A B", Value: "x"}}}}
		}, "spec.source.credentialProvider.env[0].name"},
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
	for i, src := range []v1alpha1.CredentialSource{
		{ECR: &v1alpha1.ECRSource{Region: "eu-west-1", RegistryIDs: []string{"123456789012"}}},
		{ECR: &v1alpha1.ECRSource{Public: true}},
		{GCP: &v1alpha1.GCPSource{Identity: v1alpha1.CloudIdentity{WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: "puller",
			Audience: "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k"}}}},
		{ACR: &v1alpha1.ACRSource{Registry: "example.azurecr.io", TenantID: "t", ClientID: "c", Identity: v1alpha1.CloudIdentity{SecretRef: &v1alpha1.SecretReference{Name: "azure"}}}},
		{CredentialProvider: &v1alpha1.CredentialProviderSource{Command: "/plugins/ecr-credential-provider", Args: []string{"get-credentials"},
			Env: []v1alpha1.EnvVar{{Name: "AWS_PROFILE", Value: "pull"}}}},
	} {
		cloudOK := base()
		cloudOK.Name = fmt.Sprintf("validation-cloud-%d", i)
		cloudOK.Spec.Source = src
		if err := c.Create(bg, cloudOK); err != nil {
			t.Errorf("valid cloud source %d rejected: %v", i, err)
			continue
		}
		_ = c.Delete(bg, cloudOK)
	}
	// A tenant may not act as the manager.
	for name, src := range map[string]v1alpha1.CredentialSource{
		"a RegistryCredential cannot use the manager's own cloud identity: set spec.source.ecr.identity.webIdentity": {ECR: &v1alpha1.ECRSource{Region: "eu-west-1"}},
		"a RegistryCredential cannot use the manager's own cloud identity: set spec.source.gcp.identity.webIdentity": {GCP: &v1alpha1.GCPSource{}},
		"a RegistryCredential cannot run a credential provider plugin":                                               {CredentialProvider: &v1alpha1.CredentialProviderSource{Command: "/plugins/p"}},
	} {
		rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "validation-tenant"}}
		rc.Spec.Registries = []string{"r.example.com"}
		rc.Spec.Source = src
		err := c.Create(bg, rc)
		if err == nil {
			_ = c.Delete(bg, rc)
			t.Errorf("RegistryCredential accepted, want %q", name)
		} else if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not contain %q", err, name)
		}
	}
	noSA := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "validation-tenant-node"}}
	noSA.Spec.Registries = []string{"r.example.com"}
	noSA.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
	noSA.Spec.Delivery = v1alpha1.DeliveryNode
	noSA.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
	if err := c.Create(bg, noSA); err == nil {
		_ = c.Delete(bg, noSA)
		t.Error("a RegistryCredential with delivery Node and serviceAccounts None was accepted")
	} else if !strings.Contains(err.Error(), "would serve none") {
		t.Errorf("error %q does not say why", err)
	}
	tenantOK := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "validation-tenant-ok"}}
	tenantOK.Spec.Registries = []string{"r.example.com"}
	tenantOK.Spec.Source.ECR = &v1alpha1.ECRSource{Region: "eu-west-1", Identity: v1alpha1.CloudIdentity{SecretRef: &v1alpha1.SecretReference{Name: "keys"}}}
	if err := c.Create(bg, tenantOK); err != nil {
		t.Errorf("a tenant's ECR source with its own keys rejected: %v", err)
	} else {
		_ = c.Delete(bg, tenantOK)
	}
	if ok.Spec.Delivery != v1alpha1.DeliverySecrets {
		t.Errorf("delivery defaulted to %q, want Secrets", ok.Spec.Delivery)
	}
	nodeOK := base()
	nodeOK.Name = "validation-node"
	nodeOK.Spec.Delivery = v1alpha1.DeliveryNode
	nodeOK.Spec.ServiceAccounts = v1alpha1.ServiceAccountSelection{Mode: v1alpha1.ServiceAccountsSelector, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"pull": "yes"}}}
	if err := c.Create(bg, nodeOK); err != nil {
		t.Errorf("delivery Node with a ServiceAccount selector rejected: %v", err)
	} else {
		_ = c.Delete(bg, nodeOK)
	}
	if ok.Spec.ServiceAccounts.Mode != v1alpha1.ServiceAccountsAll || !ok.Spec.PodInjection.InjectionEnabled() || ok.Spec.PodInjection.Enabled == nil {
		t.Errorf("defaults not applied: %+v %+v", ok.Spec.ServiceAccounts, ok.Spec.PodInjection)
	}
}
