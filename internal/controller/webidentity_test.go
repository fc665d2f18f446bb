package controller_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/fakecloud"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// trustCluster makes a fake cloud trust the control plane's
// ServiceAccount issuer, as an IAM OIDC provider or a workload identity
// pool does.
func trustCluster(t *testing.T) *fakecloud.OIDC {
	t.Helper()
	o, err := fakecloud.ClusterOIDC(bg, suite.ControlPlane(t).Config)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func tenantCred(ns, name string, src v1alpha1.CredentialSource, registries ...string) *v1alpha1.RegistryCredential {
	rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	rc.Spec.Registries = registries
	rc.Spec.Source = src
	return rc
}

// TestWebIdentityPerTenant: each tenant's RegistryCredential gets its
// token as the tenant's own ServiceAccount, exchanged with AWS STS and
// Google STS; a ServiceAccount the cloud does not trust is refused.
func TestWebIdentityPerTenant(t *testing.T) {
	c := startManager(t)
	oidc := trustCluster(t)
	w := newTokenWorld(t, time.Hour)
	w.aws.TrustOIDC(oidc)
	// The SDK finds STS here, as it would a VPC endpoint.
	t.Setenv("AWS_ENDPOINT_URL_STS", w.aws.URL)
	g, err := fakecloud.StartGoogle(w.reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	g.TrustOIDC(oidc)
	cloudTrust.Add(g.CA.CertPEM)

	const provider = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/clusters/providers/test"
	role := w.aws.RoleARN("puller")
	trusted := newNamespace(t, c, "tenant-ok", nil)
	untrusted := newNamespace(t, c, "tenant-no", nil)
	for _, ns := range []string{trusted, untrusted} {
		createOptedInSA(t, c, ns, "puller", "sts.amazonaws.com", provider)
	}
	w.aws.AllowRole(role, "system:serviceaccount:"+trusted+":puller")
	g.AllowProvider(provider, "system:serviceaccount:"+trusted+":puller")

	ecr := func() v1alpha1.CredentialSource {
		return v1alpha1.CredentialSource{ECR: &v1alpha1.ECRSource{Region: "eu-west-1", Endpoint: w.aws.URL, Identity: v1alpha1.CloudIdentity{
			WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: "puller", Audience: "sts.amazonaws.com", RoleARN: role}}}}
	}
	gcp := func() v1alpha1.CredentialSource {
		return v1alpha1.CredentialSource{GCP: &v1alpha1.GCPSource{TokenURL: g.URL + "/v1/token", Identity: v1alpha1.CloudIdentity{
			WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: "puller", Audience: provider}}}}
	}
	for _, ns := range []string{trusted, untrusted} {
		for name, src := range map[string]v1alpha1.CredentialSource{"ecr": ecr(), "gcp": gcp()} {
			rc := tenantCred(ns, name, src, w.reg.Host)
			rc.Spec.SecretName = name
			if err := c.Create(bg, rc); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { deleteAndWait(t, c, rc) })
		}
	}

	for _, name := range []string{"ecr", "gcp"} {
		registryReady(t, c, trusted, name, metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1", "")
		var data []byte
		testenv.Eventually(t, wait, testenv.Condition("the "+name+" copy", func() bool {
			d, _, err := secretData(bg, c, trusted, name)
			data = d
			return err == nil && d != nil
		}))
		if err := w.pull(data); err != nil {
			t.Errorf("pull with the %s web identity token: %v", name, err)
		}
		got := registryReady(t, c, untrusted, name, metav1.ConditionFalse, v1alpha1.ReasonAccessDenied, "0/1", "")
		if msg := got.Status.Conditions[0].Message; !strings.Contains(msg, untrusted) && !strings.Contains(msg, "denied") && !strings.Contains(msg, "AccessDenied") {
			t.Errorf("%s in the untrusted tenant: message %q says nothing of who was refused", name, msg)
		}
	}
	if n := w.aws.TokensForRole(role); n < 1 {
		t.Errorf("%d ECR tokens issued to the role's sessions, want the trusted tenant's", n)
	}

	// A ServiceAccount that does not exist is IdentityNotFound.
	rc := tenantCred(trusted, "ghost", v1alpha1.CredentialSource{ECR: &v1alpha1.ECRSource{Region: "eu-west-1", Endpoint: w.aws.URL,
		Identity: v1alpha1.CloudIdentity{WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: "ghost", Audience: "sts.amazonaws.com", RoleARN: role}}}}, w.reg.Host)
	if err := c.Create(bg, rc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWait(t, c, rc) })
	registryReady(t, c, trusted, "ghost", metav1.ConditionFalse, v1alpha1.ReasonIdentityNotFound, "0/1", "ServiceAccount "+trusted+"/ghost not found")
}

// TestACRWebIdentity: a tenant's ServiceAccount token is a federated
// client assertion at Entra ID, and the Entra token is exchanged at the
// registry's /oauth2/exchange for the refresh token the copy holds.
func TestACRWebIdentity(t *testing.T) {
	c := startManager(t)
	oidc := trustCluster(t)
	az, err := fakecloud.StartAzure("11111111-2222-3333-4444-555555555555")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close)
	az.TrustOIDC(oidc)
	reg, err := testregistry.Start(testregistry.Token, testregistry.WithHandler("/oauth2/exchange", az.Exchange()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	az.ServeRegistry(reg.Host, reg)
	if _, err := reg.PushRandomImage(bg, "team/app:v1"); err != nil {
		t.Fatal(err)
	}
	cloudTrust.Add(az.CA.CertPEM)
	cloudTrust.Add(reg.CA.CertPEM)
	w := &tokenWorld{reg: reg}

	ns := newNamespace(t, c, "tenant-acr", nil)
	createOptedInSA(t, c, ns, "puller", "api://AzureADTokenExchange")
	az.AllowFederated("app-acr", "system:serviceaccount:"+ns+":puller")
	rc := tenantCred(ns, "acr", v1alpha1.CredentialSource{ACR: &v1alpha1.ACRSource{Registry: reg.Host, TenantID: az.Tenant, ClientID: "app-acr",
		AuthorityHost: az.URL + "/", Identity: v1alpha1.CloudIdentity{WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: "puller", Audience: "api://AzureADTokenExchange"}}}},
		reg.Host)
	if err := c.Create(bg, rc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWait(t, c, rc) })
	got := registryReady(t, c, ns, "acr", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1", "")
	if got.Status.Token == nil || got.Status.Token.ExpiresAt == nil || time.Until(got.Status.Token.ExpiresAt.Time) < 2*time.Hour {
		t.Errorf("status.token = %+v, want the 3-hour expiry of the refresh token", got.Status.Token)
	}
	d, _, err := secretData(bg, c, ns, "regcred-acr")
	if err != nil || d == nil {
		t.Fatalf("no copy: %v", err)
	}
	if err := w.pull(d); err != nil {
		t.Errorf("pull with the ACR refresh token: %v", err)
	}
}
