package cloudsrc

import (
	"context"
	"errors"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/credential"
)

// apiServer fakes the TokenRequest and TokenReview APIs: it mints
// "token-for-AUDIENCE" and authenticates the audiences in accepts.
type apiServer struct {
	minted, reviewed int
	accepts          map[string]bool
}

func (s *apiServer) builder(t *testing.T, objs ...client.Object) *Builder {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		SubResourceCreate: func(_ context.Context, _ client.Client, sub string, _ client.Object, obj client.Object, _ ...client.SubResourceCreateOption) error {
			tr := obj.(*authenticationv1.TokenRequest)
			s.minted++
			tr.Status.Token = "token-for-" + tr.Spec.Audiences[0]
			return nil
		},
		Create: func(_ context.Context, _ client.WithWatch, obj client.Object, _ ...client.CreateOption) error {
			r, ok := obj.(*authenticationv1.TokenReview)
			if !ok {
				return errors.New("unexpected create")
			}
			s.reviewed++
			if len(r.Spec.Audiences) != 0 {
				return errors.New("the review must ask for the API server's own audiences")
			}
			r.Status.Authenticated = s.accepts[strings.TrimPrefix(r.Spec.Token, "token-for-")]
			return nil
		},
	}).Build()
	return &Builder{Reader: c, Client: c, Self: func(context.Context) (string, error) {
		return "system:serviceaccount:regcred-system:regcred", nil
	}}
}

func sa(ns, name, audiences string) *corev1.ServiceAccount {
	s := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if audiences != "" {
		s.Annotations = map[string]string{credential.AnnotationTokenAudiences: audiences}
	}
	return s
}

func wantReason(t *testing.T, err error, reason cloud.Reason, part string) {
	t.Helper()
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Reason != reason || !strings.Contains(ce.Message, part) {
		t.Errorf("got %v, want %s containing %q", err, reason, part)
	}
}

func TestMintNeedsOptIn(t *testing.T) {
	s := &apiServer{}
	b := s.builder(t, sa("shop", "ci", ""), sa("shop", "web", "api://AzureADTokenExchange, sts.amazonaws.com"))
	_, err := b.mint(context.Background(), "shop", "ci", "sts.amazonaws.com")
	wantReason(t, err, cloud.AccessDenied, "ServiceAccount shop/ci has not opted in to tokens for audience sts.amazonaws.com: annotate it regcred.dev/token-audiences=sts.amazonaws.com")
	_, err = b.mint(context.Background(), "shop", "web", "//iam.googleapis.com/x")
	wantReason(t, err, cloud.AccessDenied, "has not opted in")
	_, err = b.mint(context.Background(), "shop", "ghost", "sts.amazonaws.com")
	wantReason(t, err, cloud.IdentityNotFound, "ServiceAccount shop/ghost not found")
	if s.minted != 0 {
		t.Fatalf("%d tokens minted for ServiceAccounts that did not opt in", s.minted)
	}
	tok, err := b.mint(context.Background(), "shop", "web", "sts.amazonaws.com")
	if err != nil || tok != "token-for-sts.amazonaws.com" {
		t.Fatalf("opted-in audience: %q, %v", tok, err)
	}
	if s.reviewed != 1 {
		t.Errorf("%d TokenReviews, want 1 for the minted token", s.reviewed)
	}
}

func TestMintRefusesAPIServerAudiences(t *testing.T) {
	s := &apiServer{accepts: map[string]bool{"https://api.internal.example": true}}
	all := strings.Join(append(apiServerAudiences, "https://api.internal.example"), ",")
	b := s.builder(t, sa("shop", "ci", all))
	for _, aud := range []string{"https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local", "kubernetes.default.svc", "api", ""} {
		_, err := b.mint(context.Background(), "shop", "ci", aud)
		wantReason(t, err, cloud.AccessDenied, "is one the API server accepts")
	}
	if s.minted != 0 {
		t.Errorf("%d tokens minted for well-known API server audiences", s.minted)
	}
	// An audience the API server was configured with (--api-audiences):
	// only the TokenReview knows it; the token is minted, then dropped.
	tok, err := b.mint(context.Background(), "shop", "ci", "https://api.internal.example")
	wantReason(t, err, cloud.AccessDenied, "is one the API server accepts")
	if tok != "" {
		t.Errorf("the token the API server accepts was handed out")
	}
}

func TestMintRefusesTheManagersOwnServiceAccount(t *testing.T) {
	s := &apiServer{}
	b := s.builder(t, sa("regcred-system", "regcred", "sts.amazonaws.com"), sa("regcred-system", "puller", "sts.amazonaws.com"))
	calls := 0
	self := b.Self
	b.Self = func(ctx context.Context) (string, error) { calls++; return self(ctx) }
	_, err := b.mint(context.Background(), "regcred-system", "regcred", "sts.amazonaws.com")
	wantReason(t, err, cloud.AccessDenied, "regcred-system/regcred is regcred's own")
	if _, err := b.mint(context.Background(), "regcred-system", "puller", "sts.amazonaws.com"); err != nil {
		t.Errorf("another opted-in ServiceAccount of regcred's namespace: %v", err)
	}
	if calls != 1 {
		t.Errorf("the manager's identity was asked %d times, want once", calls)
	}
	if s.minted != 1 {
		t.Errorf("%d tokens minted, want 1 (not the manager's own)", s.minted)
	}
}

func TestAudiences(t *testing.T) {
	got := Audiences(" sts.amazonaws.com,, api://AzureADTokenExchange ,")
	if strings.Join(got, "|") != "sts.amazonaws.com|api://AzureADTokenExchange" {
		t.Errorf("Audiences = %q", got)
	}
	if Audiences("") != nil {
		t.Errorf("an empty annotation names audiences")
	}
}

func TestHostAllowed(t *testing.T) {
	hosts := []string{"sts.example.com", "LOGIN.example.com:8443", "127.0.0.1"}
	for u, want := range map[string]bool{
		"https://sts.example.com/v1/token":        true,
		"https://STS.example.com:443/":            true,
		"https://login.example.com:8443/":         true,
		"https://login.example.com/":              false,
		"https://127.0.0.1:4443/token":            true,
		"http://sts.example.com/":                 false,
		"https://evil.example/":                   false,
		"https://sts.example.com.evil.example/":   false,
		"https://user@sts.example.com/":           false,
		"https://evil.example/?h=sts.example.com": false,
		"not a url": false,
	} {
		if got := HostAllowed(u, hosts); got != want {
			t.Errorf("HostAllowed(%q) = %v, want %v", u, got, want)
		}
	}
	if HostAllowed("https://sts.example.com/", nil) {
		t.Error("an empty allow-list allows a host")
	}
}

func TestTenantEndpointOverrides(t *testing.T) {
	web := v1alpha1.CloudIdentity{WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: "ci", Audience: "sts.amazonaws.com"}}
	srcs := map[string]v1alpha1.CredentialSource{
		"spec.source.ecr.endpoint":      {ECR: &v1alpha1.ECRSource{Region: "eu-west-1", Endpoint: "https://evil.example", Identity: web}},
		"spec.source.gcp.tokenURL":      {GCP: &v1alpha1.GCPSource{TokenURL: "https://evil.example/token", Identity: web}},
		"spec.source.acr.authorityHost": {ACR: &v1alpha1.ACRSource{Registry: "x.azurecr.io", AuthorityHost: "https://evil.example/", Identity: web}},
	}
	for _, hosts := range [][]string{nil, {"sts.example.com"}} {
		b := &Builder{TenantEndpointHosts: hosts}
		for field, src := range srcs {
			if _, err := b.Fetcher(&src, "shop", []string{"r.example.com"}, true); err == nil || !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), "--tenant-endpoint-hosts") {
				t.Errorf("hosts %v, tenant %s override: %v, want a refusal naming the field and the flag", hosts, field, err)
			}
			if _, err := b.Fetcher(&src, "regcred-system", []string{"r.example.com"}, false); err != nil {
				t.Errorf("a ClusterRegistryCredential's %s override: %v", field, err)
			}
		}
	}
	b := &Builder{TenantEndpointHosts: []string{"evil.example"}}
	for field, src := range srcs {
		if _, err := b.Fetcher(&src, "shop", []string{"r.example.com"}, true); err != nil {
			t.Errorf("allowed host in %s: %v", field, err)
		}
	}
	// No override: nothing to allow.
	plain := v1alpha1.CredentialSource{ECR: &v1alpha1.ECRSource{Region: "eu-west-1", Identity: web}}
	if _, err := (&Builder{}).Fetcher(&plain, "shop", nil, true); err != nil {
		t.Errorf("a tenant ECR source without override: %v", err)
	}
}

// A tenant's ACR registry receives the Entra token (good for every
// registry of the identity) at /oauth2/exchange: it must be an Azure login
// server or an allowed host.
func TestTenantACRRegistry(t *testing.T) {
	web := v1alpha1.CloudIdentity{WebIdentity: &v1alpha1.WebIdentity{ServiceAccountName: "ci", Audience: "api://AzureADTokenExchange"}}
	for registry, want := range map[string]bool{
		"team.azurecr.io": true, "Team.AzureCR.io": true, "team.azurecr.cn": true, "team.azurecr.us": true,
		"evil.example": false, "team.azurecr.io.evil.example": false, "a.b.azurecr.io": false, ".azurecr.io": false,
		"team.azurecr.io:8443": false, "registry.example.com:5000": true,
	} {
		src := v1alpha1.CredentialSource{ACR: &v1alpha1.ACRSource{Registry: registry, Identity: web}}
		b := &Builder{TenantEndpointHosts: []string{"registry.example.com"}}
		_, err := b.Fetcher(&src, "shop", []string{registry}, true)
		if got := err == nil; got != want {
			t.Errorf("tenant ACR registry %s: allowed %t (%v), want %t", registry, got, err, want)
		}
		if _, err := b.Fetcher(&src, "regcred-system", []string{registry}, false); err != nil {
			t.Errorf("a ClusterRegistryCredential's ACR registry %s: %v", registry, err)
		}
	}
}
