package release_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv"
)

// tenantPolicy renders the chart and returns its tenant endpoint policy,
// binding and the manager's arguments.
func tenantPolicy(t *testing.T, set ...string) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding, []string) {
	t.Helper()
	objs := objects(t, render(t, testenv.Tool(t, "helm3"), set...))
	var (
		vap  admissionregistrationv1.ValidatingAdmissionPolicy
		bind admissionregistrationv1.ValidatingAdmissionPolicyBinding
		dep  appsv1.Deployment
	)
	if !find(t, objs, "ValidatingAdmissionPolicy", &vap) || !find(t, objs, "ValidatingAdmissionPolicyBinding", &bind) || !find(t, objs, "Deployment", &dep) {
		t.Fatalf("%v: the chart renders no tenant endpoint policy, binding or Deployment", set)
	}
	return &vap, &bind, dep.Spec.Template.Spec.Containers[0].Args
}

func variable(vap *admissionregistrationv1.ValidatingAdmissionPolicy, name string) string {
	for _, v := range vap.Spec.Variables {
		if v.Name == name {
			return v.Expression
		}
	}
	return ""
}

// TestChartTenantPolicy: the chart's tenantEndpointHosts reaches the
// manager as --tenant-endpoint-hosts and the admission policy as a CEL
// list; by default the list is empty (every tenant override refused).
func TestChartTenantPolicy(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	vap, bind, args := tenantPolicy(t)
	if got := variable(vap, "allowed"); got != "[]" {
		t.Errorf("default allowed hosts %q, want []", got)
	}
	if bind.Spec.PolicyName != vap.Name || len(bind.Spec.ValidationActions) != 1 || bind.Spec.ValidationActions[0] != admissionregistrationv1.Deny {
		t.Errorf("binding %+v does not deny with policy %s", bind.Spec, vap.Name)
	}
	if vap.Spec.FailurePolicy == nil || *vap.Spec.FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("failurePolicy %v, want Fail", vap.Spec.FailurePolicy)
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--tenant-endpoint-hosts") {
			t.Errorf("default args carry %s", a)
		}
	}
	rules := vap.Spec.MatchConstraints.ResourceRules
	if len(rules) != 1 || strings.Join(rules[0].Resources, ",") != "registrycredentials" {
		t.Errorf("policy matches %+v, want registrycredentials only", rules)
	}

	vap, _, args = tenantPolicy(t, "--set", "tenantEndpointHosts={sts.example.com,Login.Example.com:8443}")
	if got, want := variable(vap, "allowed"), `["sts.example.com","login.example.com:8443"]`; got != want {
		t.Errorf("allowed hosts %q, want %q", got, want)
	}
	if !contains(args, "--tenant-endpoint-hosts=sts.example.com,Login.Example.com:8443") {
		t.Errorf("args %q lack --tenant-endpoint-hosts", args)
	}
	// The list is written into CEL: the schema keeps anything but host
	// names out of it.
	if _, err := renderErr(testenv.Tool(t, "helm3"), "--set", `tenantEndpointHosts={x" || true || "}`); err == nil {
		t.Error("a tenantEndpointHosts entry that is no host name rendered")
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestChartTenantPolicyRefuses: on the real API server the rendered
// policy refuses a RegistryCredential whose endpoint override names a
// host not in tenantEndpointHosts, and admits allowed hosts, credentials
// without overrides and ClusterRegistryCredentials.
func TestChartTenantPolicyRefuses(t *testing.T) {
	testenv.SkipShort(t, "runs Helm and an API server")
	cp := suite.ControlPlane(t)
	ctx := context.Background()
	earlier := installTenantPolicy(t, cp.Client, "allowed.example.com")
	web := v1alpha1.CloudIdentity{WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: "puller", Audience: "sts.amazonaws.com"}}
	rc := func(name string, src v1alpha1.CredentialSource) *v1alpha1.RegistryCredential {
		c := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
		c.Spec.Registries = []string{"registry.example.com"}
		c.Spec.Source = src
		return c
	}
	refused := map[string]v1alpha1.CredentialSource{
		"ecr": {ECR: &v1alpha1.ECRSource{Region: "eu-west-1", Endpoint: "https://ecr.evil.example", Identity: web}},
		"gcp": {GCP: &v1alpha1.GCPSource{TokenURL: "https://allowed.example.com.evil.example/v1/token", Identity: web}},
		"acr": {ACR: &v1alpha1.ACRSource{Registry: "x.azurecr.io", AuthorityHost: "https://login.evil.example/", Identity: web}},
	}
	// The API server loads policies asynchronously: wait for the first
	// refusal, then every other answer is the policy's.
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		if err := cp.Client.Create(ctx, rc("ecr", refused["ecr"]), client.DryRunAll); err == nil {
			return fmt.Errorf("a RegistryCredential with a non-allowed ecr.endpoint was admitted")
		} else if !strings.Contains(err.Error(), "tenantEndpointHosts") {
			return fmt.Errorf("refused for another reason: %v", err)
		}
		return nil
	})
	for name, src := range refused {
		if err := cp.Client.Create(ctx, rc(name, src), client.DryRunAll); err == nil || !strings.Contains(err.Error(), "allowed.example.com") {
			t.Errorf("%s override to a host not allowed: %v, want refused naming the allowed hosts", name, err)
		}
	}
	for name, src := range map[string]v1alpha1.CredentialSource{
		"ecr-allowed":  {ECR: &v1alpha1.ECRSource{Region: "eu-west-1", Endpoint: "https://allowed.example.com", Identity: web}},
		"gcp-allowed":  {GCP: &v1alpha1.GCPSource{TokenURL: "https://Allowed.Example.com:8443/v1/token", Identity: web}},
		"no-override":  {ACR: &v1alpha1.ACRSource{Registry: "x.azurecr.io", Identity: web}},
		"secret-based": {SecretRef: &v1alpha1.SecretReference{Name: "pull"}},
	} {
		if err := cp.Client.Create(ctx, rc(name, src), client.DryRunAll); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
	earlier.Labels = map[string]string{"team": "a"}
	if err := cp.Client.Update(ctx, earlier); err != nil {
		t.Errorf("an update keeping an earlier override refused: %v", err)
	}
	earlier.Spec.Source.GCP.TokenURL = "https://other.evil.example/v1/token"
	if err := cp.Client.Update(ctx, earlier, client.DryRunAll); err == nil {
		t.Error("an update to another host not allowed was admitted")
	}
	crc := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "admin-endpoint"}}
	crc.Spec.Registries = []string{"registry.example.com"}
	crc.Spec.Source = refused["ecr"]
	if err := cp.Client.Create(ctx, crc, client.DryRunAll); err != nil {
		t.Errorf("a ClusterRegistryCredential's override refused: %v", err)
	}
}

// installTenantPolicy creates a RegistryCredential with a host not allowed,
// then the chart's policy allowing host, and returns that credential.
func installTenantPolicy(t *testing.T, c client.Client, host string) *v1alpha1.RegistryCredential {
	t.Helper()
	ctx := context.Background()
	// Written before the policy: later updates that keep its override
	// (the manager's finalizer, a tenant's label) stay possible.
	earlier := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "earlier"}}
	earlier.Spec.Registries = []string{"registry.example.com"}
	earlier.Spec.Source.GCP = &v1alpha1.GCPSource{TokenURL: "https://sts.evil.example/v1/token",
		Identity: v1alpha1.CloudIdentity{WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: "puller", Audience: "sts.amazonaws.com"}}}
	if err := c.Create(ctx, earlier); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, earlier) })
	vap, bind, _ := tenantPolicy(t, "--set", "tenantEndpointHosts={"+host+"}")
	for _, o := range []client.Object{vap, bind} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(ctx, o) })
	}
	return earlier
}
