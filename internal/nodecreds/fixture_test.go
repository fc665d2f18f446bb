package nodecreds

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/keyring"
)

// The fixture every broker test and benchmark starts from: a node, two
// namespaces, their ServiceAccounts and Pods, credentials of every
// delivery, and a fake API server (TokenReviews) and Source that count.

const (
	testNode  = "node-a"
	regcredNS = "regcred-system"
)

// passwordOf is the password the fake Source renders for a credential:
// tests search every answer and error for it.
func passwordOf(k credential.Key) string { return "pw-" + k.Name + "-S3CRET" }

// fakeSource renders each credential as one docker config entry per
// registry key, counting calls per credential.
type fakeSource struct {
	mu      sync.Mutex
	calls   map[credential.Key]int
	expires map[credential.Key]time.Time
	fail    map[credential.Key]error
}

func newFakeSource() *fakeSource {
	return &fakeSource{calls: map[credential.Key]int{}, expires: map[credential.Key]time.Time{}, fail: map[credential.Key]error{}}
}

func (s *fakeSource) NodeCredential(_ context.Context, c *credential.Credential) (*Rendered, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[c.Key]++
	if err := s.fail[c.Key]; err != nil {
		return nil, err
	}
	cfg := &dockercfg.Config{Auths: map[string]dockercfg.Entry{}}
	for _, r := range c.Spec.Registries {
		cfg.Auths[r] = dockercfg.Entry{Username: "user-" + c.Name, Password: passwordOf(c.Key)}
	}
	return &Rendered{Config: cfg, ExpiresAt: s.expires[c.Key]}, nil
}

func (s *fakeSource) count(k credential.Key) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[k]
}

// fakeReviewer is the API server's TokenReview: the tokens it accepts and
// what it says of each.
type fakeReviewer struct {
	mu     sync.Mutex
	status map[string]authenticationv1.TokenReviewStatus
	err    error
	calls  atomic.Int64
}

func newFakeReviewer() *fakeReviewer {
	return &fakeReviewer{status: map[string]authenticationv1.TokenReviewStatus{}}
}

func (f *fakeReviewer) create(_ context.Context, r *authenticationv1.TokenReview) error {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	st, ok := f.status[r.Spec.Token]
	if !ok {
		r.Status = authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
		return nil
	}
	r.Status = st
	return nil
}

func (f *fakeReviewer) accept(token string, st authenticationv1.TokenReviewStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status[token] = st
}

var tokenSeq atomic.Int64

// jwt is a token shaped like the API server's, expiring at exp: the fake
// reviewer checks no signature; the broker's precheck reads its claims.
func jwt(exp time.Time) string {
	claims, _ := json.Marshal(map[string]any{"exp": exp.Unix(), "jti": tokenSeq.Add(1), "aud": []string{DefaultAudience},
		"kubernetes.io": map[string]any{"pod": map[string]string{"name": "p", "uid": "u"}, "node": map[string]string{"name": "n", "uid": "u"}}})
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(claims) + ".c2lnbmF0dXJl"
}

// boundStatus is what the API server says of a token the kubelet minted
// for pod on node.
func boundStatus(ns, sa, pod, uid, node string) authenticationv1.TokenReviewStatus {
	extra := map[string]authenticationv1.ExtraValue{extraPodName: {pod}, extraPodUID: {uid}}
	if node != "" {
		extra[extraNodeName] = authenticationv1.ExtraValue{node}
	}
	return authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{DefaultAudience},
		User: authenticationv1.UserInfo{Username: saPrefix + ns + ":" + sa, Extra: extra}}
}

func testPod(ns, name, sa, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Spec: corev1.PodSpec{ServiceAccountName: sa, NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "harbor.example.com/app:1"}}}}
}

func crc(name string, delivery v1alpha1.DeliveryMode, registries ...string) *v1alpha1.ClusterRegistryCredential {
	c := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)}}
	c.Spec.Registries = registries
	c.Spec.Delivery = delivery
	c.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: name}
	return c
}

func rc(ns, name string, delivery v1alpha1.DeliveryMode, registries ...string) *v1alpha1.RegistryCredential {
	c := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)}}
	c.Spec.Registries = registries
	c.Spec.Delivery = delivery
	c.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: name}
	return c
}

func clusterKey(name string) credential.Key {
	return credential.Key{Kind: credential.KindCluster, Name: name}
}

// env is a broker over the fixture.
type env struct {
	broker *Broker
	cat    *credential.Catalogue
	src    *fakeSource
	review *fakeReviewer
	client client.Client
	now    time.Time
	// tokens by Pod name ("apps/web"), minted by the kubelet for it.
	tokens map[string]string
}

// fixtureObjects are the namespaces, ServiceAccounts and Pods.
func fixtureObjects() []client.Object {
	sneaky := testPod("apps", "sneaky", "default", testNode)
	sneaky.Spec.Volumes = []corev1.Volume{{Name: "t", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: DefaultAudience, Path: "token"}}}}}}}
	return []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"team": "a"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other", Labels: map[string]string{"team": "b"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: regcredNS}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "default"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "builder", Labels: map[string]string{"role": "build"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "default"}},
		testPod("apps", "web", "", testNode), // "" runs as default
		testPod("apps", "build", "builder", testNode),
		testPod("other", "x", "default", testNode),
		sneaky,
	}
}

// fixtureCredentials: harbor (Node, namespaces team=a, every
// ServiceAccount), harbor-team (Node, a longer key, only role=build),
// both-ghcr (Both, every namespace), secrets-only (Secrets), and
// RegistryCredentials of apps (Node, default ServiceAccount only) and of
// other (Node).
func fixtureCredentials() []client.Object {
	harbor := crc("harbor", v1alpha1.DeliveryNode, "harbor.example.com")
	harbor.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	team := crc("harbor-team", v1alpha1.DeliveryNode, "harbor.example.com/team")
	team.Spec.ServiceAccounts = v1alpha1.ServiceAccountSelection{Mode: v1alpha1.ServiceAccountsSelector,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "build"}}}
	own := rc("apps", "own", v1alpha1.DeliveryNode, "own.example.com")
	own.Spec.ServiceAccounts = v1alpha1.ServiceAccountSelection{Mode: v1alpha1.ServiceAccountsDefault}
	return []client.Object{harbor, team,
		crc("both-ghcr", v1alpha1.DeliveryBoth, "ghcr.io"),
		crc("secrets-only", v1alpha1.DeliverySecrets, "secret.example.com", "harbor.example.com"),
		own,
		rc("other", "tenant", v1alpha1.DeliveryNode, "tenant.example.com", "harbor.example.com"),
	}
}

func newEnv(t testing.TB, opts Options, mutate ...func(*env)) *env {
	t.Helper()
	scheme, err := credential.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	creds := fixtureCredentials()
	objs := append(fixtureObjects(), creds...)
	e := &env{cat: credential.NewCatalogue(regcredNS), src: newFakeSource(), review: newFakeReviewer(), now: time.Now(), tokens: map[string]string{}}
	e.client = fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).
		WithStatusSubresource(&v1alpha1.ClusterRegistryCredential{}, &v1alpha1.RegistryCredential{}).Build()
	for _, c := range creds {
		e.cat.Put(c)
	}
	e.cat.MarkSynced()
	for _, o := range fixtureObjects() {
		if p, ok := o.(*corev1.Pod); ok {
			sa := p.Spec.ServiceAccountName
			if sa == "" {
				sa = "default"
			}
			tok := jwt(e.now.Add(time.Hour))
			e.review.accept(tok, boundStatus(p.Namespace, sa, p.Name, string(p.UID), p.Spec.NodeName))
			e.tokens[p.Namespace+"/"+p.Name] = tok
		}
	}
	for _, m := range mutate {
		m(e)
	}
	b, err := New(Deps{Catalogue: e.cat, Source: e.src, Pods: e.client, Cached: e.client, Review: e.review.create, Log: logr.Discard()}, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.broker = b
	return e
}

func requestBody(image, token string) []byte {
	b, _ := json.Marshal(credentialproviderv1.CredentialProviderRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: credentialproviderv1.SchemeGroupVersion.String(), Kind: "CredentialProviderRequest"},
		Image:    image, ServiceAccountToken: token})
	return b
}

func (e *env) post(body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	e.broker.ServeHTTP(w, r)
	return w
}

func (e *env) ask(image, token string) *httptest.ResponseRecorder {
	return e.post(requestBody(image, token))
}

func decodeResponse(t testing.TB, w *httptest.ResponseRecorder) *credentialproviderv1.CredentialProviderResponse {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", w.Code, w.Body)
	}
	var resp credentialproviderv1.CredentialProviderResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return &resp
}

var errAPIDown = errors.New("Post \"https://10.0.0.1:443/apis/authentication.k8s.io/v1/tokenreviews\": dial tcp 10.0.0.1:443: connect: connection refused")

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return v
}

func configOf(key, user string) *dockercfg.Config {
	return &dockercfg.Config{Auths: map[string]dockercfg.Entry{key: {Username: user, Password: "pw-" + user}}}
}

func parseTarget(repo string) keyring.Target { return keyring.ParseTarget(repo) }
