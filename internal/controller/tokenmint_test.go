package controller_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/source/cloudsrc"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testserver"
)

// createOptedInSA creates a ServiceAccount that opts in to web identity
// tokens for audiences.
func createOptedInSA(t *testing.T, c client.Client, ns, name string, audiences ...string) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Annotations: map[string]string{credential.AnnotationTokenAudiences: strings.Join(audiences, ",")}}}
	if err := c.Create(bg, sa); err != nil {
		t.Fatal(err)
	}
}

// hostileEndpoint is a tenant's https token endpoint on loopback, as
// 127.0.0.1 and as localhost, with a CA the manager trusts (so that what
// regcred would send does arrive): it counts what it receives and answers
// nothing useful.
func hostileEndpoint(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	s, err := testserver.StartTLS(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
	}), nil, "hostile CA")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	cloudTrust.Add(s.CA.CertPEM)
	return s.Server, &n
}

func gcpWebIdentity(tokenURL, sa, audience string) v1alpha1.CredentialSource {
	return v1alpha1.CredentialSource{GCP: &v1alpha1.GCPSource{TokenURL: tokenURL, Identity: v1alpha1.CloudIdentity{
		WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: sa, Audience: audience}}}}
}

// TestTokenMintNeedsOptIn: a tenant's RegistryCredential naming a
// ServiceAccount that did not opt in gets no token minted, and the
// tenant's token endpoint hears nothing.
func TestTokenMintNeedsOptIn(t *testing.T) {
	c := startManager(t)
	hostile, hits := hostileEndpoint(t)
	ns := newNamespace(t, c, "mint-optin", nil)
	createSA(t, c, ns, "deployer", nil)
	const aud = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k"
	rc := tenantCred(ns, "steal", gcpWebIdentity(hostile.URL+"/v1/token", "deployer", aud), "registry.example.com")
	if err := c.Create(bg, rc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWait(t, c, rc) })
	registryReady(t, c, ns, "steal", metav1.ConditionFalse, v1alpha1.ReasonAccessDenied, "",
		"ServiceAccount "+ns+"/deployer has not opted in to tokens for audience "+aud+": annotate it regcred.dev/token-audiences="+aud)
	if n := hits.Load(); n != 0 {
		t.Errorf("the tenant's token endpoint received %d requests, want none", n)
	}
}

// TestTokenMintRefusesAPIServerAudience: even a ServiceAccount that lists
// the API server's audience gets no token for it: such a token would let
// the endpoint act as the ServiceAccount in the cluster.
func TestTokenMintRefusesAPIServerAudience(t *testing.T) {
	c := startManager(t)
	hostile, hits := hostileEndpoint(t)
	ns := newNamespace(t, c, "mint-apiaud", nil)
	const apiAud = "https://kubernetes.default.svc.cluster.local"
	createOptedInSA(t, c, ns, "puller", "sts.amazonaws.com", apiAud)
	rc := tenantCred(ns, "steal", gcpWebIdentity(hostile.URL+"/v1/token", "puller", apiAud), "registry.example.com")
	if err := c.Create(bg, rc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWait(t, c, rc) })
	registryReady(t, c, ns, "steal", metav1.ConditionFalse, v1alpha1.ReasonAccessDenied, "", "is one the API server accepts")
	if n := hits.Load(); n != 0 {
		t.Errorf("the tenant's token endpoint received %d requests, want none", n)
	}
}

// TestTenantEndpointNotAllowed: a tenant's endpoint override whose host
// is not in --tenant-endpoint-hosts is refused before any request (the
// allowed host, 127.0.0.1, works in TestWebIdentityPerTenant).
func TestTenantEndpointNotAllowed(t *testing.T) {
	c := startManager(t)
	hostile, hits := hostileEndpoint(t)
	ns := newNamespace(t, c, "mint-endpoint", nil)
	const aud = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k"
	createOptedInSA(t, c, ns, "puller", aud)
	// The same server by a name the manager does not allow.
	url := strings.Replace(hostile.URL, "127.0.0.1", "localhost", 1) + "/v1/token"
	rc := tenantCred(ns, "elsewhere", gcpWebIdentity(url, "puller", aud), "registry.example.com")
	if err := c.Create(bg, rc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWait(t, c, rc) })
	registryReady(t, c, ns, "elsewhere", metav1.ConditionFalse, v1alpha1.ReasonSourceInvalid, "",
		"cannot override spec.source.gcp.tokenURL with host localhost:")
	if n := hits.Load(); n != 0 {
		t.Errorf("the endpoint the manager does not allow received %d requests, want none", n)
	}
}

// TestAPIServerAccepts: the TokenReview check tells a token for the API
// server's own audiences (a TokenRequest naming none gets those, whatever
// --api-audiences says) from one for a cloud.
func TestAPIServerAccepts(t *testing.T) {
	c := startManager(t)
	ns := newNamespace(t, c, "mint-review", nil)
	createSA(t, c, ns, "puller", nil)
	for aud, want := range map[string]bool{"": true, "sts.amazonaws.com": false} {
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}
		if aud != "" {
			tr.Spec.Audiences = []string{aud}
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "puller"}}
		if err := c.SubResource("token").Create(bg, sa, tr); err != nil {
			t.Fatal(err)
		}
		got, err := cloudsrc.APIServerAccepts(bg, c, tr.Status.Token)
		if err != nil || got != want {
			t.Errorf("a token for %s: accepted %v (%v), want %v", aud, got, err, want)
		}
	}
}

// TestTokenMintRefusesManagersOwnServiceAccount: a ClusterRegistryCredential
// naming the manager's own ServiceAccount gets no token, though that
// ServiceAccount opted in and the manager may mint for it. The manager of
// this suite runs as an admin, so a Builder here runs as a ServiceAccount
// of regcred's namespace (impersonated) and learns so from the API server.
func TestTokenMintRefusesManagersOwnServiceAccount(t *testing.T) {
	c := startManager(t)
	hostile, hits := hostileEndpoint(t)
	const aud = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k"
	createOptedInSA(t, c, regcredNamespace, "mint-self", aud)
	createOptedInSA(t, c, regcredNamespace, "mint-other", aud)
	grantMinting(t, c, "mint-self")
	cfg := rest.CopyConfig(suite.ControlPlane(t).Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + regcredNamespace + ":mint-self"}
	as, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	b := &cloudsrc.Builder{Reader: as, Client: as, Env: cloud.Env{HTTPClient: cloudTrust.Client()}}
	src := gcpWebIdentity(hostile.URL+"/v1/token", "mint-self", aud)
	f, err := b.Fetcher(&src, regcredNamespace, []string{"registry.example.com"}, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Fetch(bg)
	wantCloudError(t, err, cloud.AccessDenied, "ServiceAccount "+regcredNamespace+"/mint-self is regcred's own")
	if n := hits.Load(); n != 0 {
		t.Errorf("the token endpoint received %d requests for the manager's own ServiceAccount, want none", n)
	}
	// Another opted-in ServiceAccount of regcred's namespace is minted
	// (its token reaches the endpoint): the refusal is the self check.
	src = gcpWebIdentity(hostile.URL+"/v1/token", "mint-other", aud)
	if f, err = b.Fetcher(&src, regcredNamespace, []string{"registry.example.com"}, false); err != nil {
		t.Fatal(err)
	}
	// (RBAC takes a moment to reach the authorizer: ask again.)
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		if _, err := f.Fetch(ctx); hits.Load() == 0 {
			return fmt.Errorf("another opted-in ServiceAccount's token never reached the endpoint: %v", err)
		}
		return nil
	})
}

func wantCloudError(t *testing.T, err error, reason cloud.Reason, part string) {
	t.Helper()
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Reason != reason || !strings.Contains(ce.Message, part) {
		t.Errorf("got %v, want %s containing %q", err, reason, part)
	}
}

// grantMinting lets ServiceAccount name of regcred's namespace do what the
// manager does to mint: read ServiceAccounts, create their tokens and
// TokenReviews.
func grantMinting(t *testing.T, c client.Client, name string) {
	t.Helper()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "regcred-test-" + name}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}},
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
	}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: regcredNamespace, Name: name}}}
	for _, o := range []client.Object{role, binding} {
		if err := c.Create(bg, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(bg, o) })
	}
}
