package controller_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/fakecloud"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// tokenWorld is a token-auth registry with an image, and a fake AWS that
// issues logins for it.
type tokenWorld struct {
	reg *testregistry.Registry
	aws *fakecloud.AWS
}

// tokenRegistry is a token-auth registry holding team/app:v1, whose CA
// the manager trusts, closed when the test ends.
func tokenRegistry(t *testing.T) *testregistry.Registry {
	t.Helper()
	reg, err := testregistry.Start(testregistry.Token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	cloudTrust.Add(reg.CA.CertPEM)
	if _, err := reg.PushRandomImage(bg, "team/app:v1"); err != nil {
		t.Fatal(err)
	}
	return reg
}

func newTokenWorld(t *testing.T, life time.Duration) *tokenWorld {
	t.Helper()
	reg := tokenRegistry(t)
	a, err := fakecloud.StartAWS(reg, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	a.SetLife(life)
	cloudTrust.Add(a.CA.CertPEM)
	return &tokenWorld{reg: reg, aws: a}
}

// pull checks a docker config's login for the registry against it.
func (w *tokenWorld) pull(data []byte) error {
	cfg, err := dockercfg.ParseDockerConfigJSON(data)
	if err != nil {
		return err
	}
	e, ok := cfg.Auths[w.reg.Host]
	if !ok {
		return fmt.Errorf("no entry for %s", w.reg.Host)
	}
	ref, err := name.ParseReference(w.reg.Ref("team/app:v1"))
	if err != nil {
		return err
	}
	_, err = remote.Head(ref, remote.WithTransport(w.reg.Transport()), remote.WithAuth(&authn.Basic{Username: e.Username, Password: e.Password}))
	return err
}

func (w *tokenWorld) keysSecret(t *testing.T, c client.Client, ns string) (string, string) {
	t.Helper()
	id, secret := w.aws.NewAccessKey()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "aws-keys-"},
		Data: map[string][]byte{cloud.AWSAccessKeyID: []byte(id), cloud.AWSSecretAccessKey: []byte(secret)}}
	if err := c.Create(bg, s); err != nil {
		t.Fatal(err)
	}
	return s.Name, id
}

func ecrCred(name, endpoint, keys string, selector map[string]string, registries ...string) *v1alpha1.ClusterRegistryCredential {
	c := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: name}}
	c.Spec.Registries = registries
	c.Spec.Source.ECR = &v1alpha1.ECRSource{Region: "eu-west-1", Endpoint: endpoint,
		Identity: v1alpha1.CloudIdentity{SecretRef: &v1alpha1.SecretReference{Name: keys}}}
	c.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: selector}
	return c
}

func passwordOf(t *testing.T, data []byte, host string) string {
	t.Helper()
	cfg, err := dockercfg.ParseDockerConfigJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Auths[host].Password
}

// TestECRTokensRefreshInPlace: an ECR credential's copies are refreshed
// before each token expires, in place (same UID), and pull after the
// first token has expired; two credentials with one identity share one
// token request per refresh.
func TestECRTokensRefreshInPlace(t *testing.T) {
	c := startManager(t)
	const life = 4 * time.Second
	w := newTokenWorld(t, life)
	keys, keyID := w.keysSecret(t, c, regcredNamespace)
	label := map[string]string{"ecr-refresh": strings.ToLower(t.Name())}
	var nss []string
	for range 3 {
		nss = append(nss, newNamespace(t, c, "ecr", label))
	}
	start := time.Now()
	for _, n := range []string{"ecr-a", "ecr-b"} {
		cr := ecrCred(n, w.aws.URL, keys, label, w.reg.Host)
		cr.Spec.SecretName = n
		if err := c.Create(bg, cr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deleteAndWait(t, c, cr) })
	}

	// Every copy, and a pull with it.
	uids := map[string]types.UID{}
	var first string
	for _, ns := range nss {
		for _, n := range []string{"ecr-a", "ecr-b"} {
			var data []byte
			testenv.Eventually(t, wait, testenv.Condition("the ECR copy "+ns+"/"+n, func() bool {
				d, s, err := secretData(bg, c, ns, n)
				if err != nil || d == nil {
					return false
				}
				data, uids[ns+"/"+n] = d, s.UID
				return true
			}))
			if err := w.pull(data); err != nil {
				t.Fatalf("pull with %s/%s: %v", ns, n, err)
			}
			if first == "" {
				first = passwordOf(t, data, w.reg.Host)
			}
		}
	}

	// Past the first token's expiry: every copy holds a newer token that
	// pulls, in the same Secret.
	testenv.Eventually(t, wait, testenv.Condition("three refreshes", func() bool { return w.aws.TokensForKey(keyID) >= 4 }))
	if time.Since(start) < life {
		testenv.Eventually(t, wait, testenv.Condition("the first token's expiry", func() bool { return time.Since(start) > life }))
	}
	firstDoc := testenv.DockerConfigJSON(t, w.reg.Host, cloud.ECRUsername, first)
	testenv.Eventually(t, wait, testenv.Condition("the registry to refuse the first token", func() bool { return w.pull(firstDoc) != nil }))
	for _, ns := range nss {
		for _, n := range []string{"ecr-a", "ecr-b"} {
			var last error
			testenv.Eventually(t, wait, testenv.Condition("a current token in "+ns+"/"+n, func() bool {
				d, s, err := secretData(bg, c, ns, n)
				if err != nil || d == nil {
					return false
				}
				if s.UID != uids[ns+"/"+n] {
					t.Fatalf("Secret %s/%s was replaced (UID %s, was %s): it must be updated in place", ns, n, s.UID, uids[ns+"/"+n])
				}
				last = w.pull(d)
				return last == nil && passwordOf(t, d, w.reg.Host) != first
			}))
		}
	}

	// One request per refresh for both credentials: refreshes come at
	// least 45% of a token's life apart (50% ± 10% jitter), and nothing
	// else asks.
	elapsed := time.Since(start)
	if max, got := 2+int(elapsed/(life*45/100)), w.aws.TokensForKey(keyID); got > max {
		t.Errorf("%d token requests in %s for one identity, want at most %d (one per refresh, shared by both credentials)", got, elapsed, max)
	}

	var cr v1alpha1.ClusterRegistryCredential
	if err := c.Get(bg, client.ObjectKey{Name: "ecr-a"}, &cr); err != nil {
		t.Fatal(err)
	}
	tok := cr.Status.Token
	if tok == nil || tok.ExpiresAt == nil || tok.RefreshedAt == nil || tok.NextRefreshAt == nil {
		t.Fatalf("status.token = %+v, want expiresAt, refreshedAt and nextRefreshAt", tok)
	}
	if !tok.NextRefreshAt.Before(tok.ExpiresAt) || tok.ExpiresAt.Sub(tok.RefreshedAt.Time) > life+time.Second {
		t.Errorf("status.token = %+v: the next refresh must come before the expiry, which is the token's life after the refresh", tok)
	}
	if cond := meta.FindStatusCondition(cr.Status.Conditions, v1alpha1.ConditionReady); cond == nil || cond.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v, want True", cond)
	}
}

// TestECRRevokedIdentity: when the cloud refuses the identity, the last
// good token keeps serving until it expires, then Ready turns False with
// AccessDenied; the copies are left alone.
func TestECRRevokedIdentity(t *testing.T) {
	c := startManager(t)
	const life = 6 * time.Second
	w := newTokenWorld(t, life)
	keys, keyID := w.keysSecret(t, c, regcredNamespace)
	label := map[string]string{"ecr-revoked": "yes"}
	ns := newNamespace(t, c, "ecr-revoked", label)
	cr := ecrCred("ecr-revoked", w.aws.URL, keys, label, w.reg.Host)
	if err := c.Create(bg, cr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWait(t, c, cr) })
	clusterReady(t, c, cr.Name, metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1")
	w.aws.RevokeAccessKey(keyID)

	got := clusterReady(t, c, cr.Name, metav1.ConditionFalse, v1alpha1.ReasonAccessDenied, "1/1")
	cond := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
	if !strings.Contains(cond.Message, "UnrecognizedClientException") {
		t.Errorf("Ready message %q does not say what AWS answered", cond.Message)
	}
	if got.Status.Token == nil || got.Status.Token.ExpiresAt == nil || got.Status.Token.ExpiresAt.After(time.Now()) {
		t.Errorf("status.token = %+v, want the expired token's expiry", got.Status.Token)
	}
	if d, _, err := secretData(bg, c, ns, "regcred-"+cr.Name); err != nil || d == nil {
		t.Errorf("the copy is gone (%v): a failing source leaves copies as they are", err)
	}
	testenv.Eventually(t, wait, testenv.Condition("an AccessDenied Event", func() bool {
		ev, err := eventsFor(bg, c, cr.Name)
		return err == nil && strings.Contains(ev, "AccessDenied")
	}))
}

// TestCloudSourceMissingKeys: a missing keys Secret is IdentityNotFound,
// and creating it heals the credential without anyone touching it.
func TestCloudSourceMissingKeys(t *testing.T) {
	c := startManager(t)
	w := newTokenWorld(t, time.Hour)
	label := map[string]string{"ecr-missing": "yes"}
	newNamespace(t, c, "ecr-missing", label)
	cr := ecrCred("ecr-missing", w.aws.URL, "no-such-keys", label, w.reg.Host)
	if err := c.Create(bg, cr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWait(t, c, cr) })
	got := clusterReady(t, c, cr.Name, metav1.ConditionFalse, v1alpha1.ReasonIdentityNotFound, "0/1")
	if msg := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady).Message; !strings.Contains(msg, "no-such-keys") {
		t.Errorf("message %q does not name the Secret", msg)
	}
	id, secret := w.aws.NewAccessKey()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNamespace, Name: "no-such-keys"},
		Data: map[string][]byte{cloud.AWSAccessKeyID: []byte(id), cloud.AWSSecretAccessKey: []byte(secret)}}
	if err := c.Create(bg, s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), s) })
	clusterReady(t, c, cr.Name, metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1")
}

// TestCredentialProviderPlugin: a ClusterRegistryCredential runs a kubelet
// credential provider plugin from the manager's plugin directory, and its
// answer pulls; a plugin elsewhere is refused.
func TestCredentialProviderPlugin(t *testing.T) {
	c := startManager(t)
	reg := tokenRegistry(t)
	w := &tokenWorld{reg: reg}
	password := "plugin-password-7f3a"
	reg.AllowTemporary("plugin-robot", password, time.Now().Add(time.Hour))
	script := "#!/bin/sh\ncat >/dev/null\nprintf '{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"kind\":\"CredentialProviderResponse\",\"cacheKeyType\":\"Registry\",\"cacheDuration\":\"10m\",\"auth\":{\"%s\":{\"username\":\"plugin-robot\",\"password\":\"%s\"}}}' \"$REGISTRY\" \"$PLUGIN_PASSWORD\"\n"
	plugin := filepath.Join(pluginDir, "test-plugin")
	if err := os.WriteFile(plugin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "test-plugin")
	if err := os.WriteFile(outside, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	label := map[string]string{"plugin": "yes"}
	ns := newNamespace(t, c, "plugin", label)
	for name, cmd := range map[string]string{"plugin-in": plugin, "plugin-out": outside} {
		cr := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: name}}
		cr.Spec.Registries = []string{reg.Host}
		cr.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: label}
		cr.Spec.SecretName = name
		cr.Spec.Source.CredentialProvider = &v1alpha1.CredentialProviderSource{Command: cmd,
			Env: []v1alpha1.EnvVar{{Name: "REGISTRY", Value: reg.Host}, {Name: "PLUGIN_PASSWORD", Value: password}}}
		if err := c.Create(bg, cr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deleteAndWait(t, c, cr) })
	}
	got := clusterReady(t, c, "plugin-in", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1")
	if got.Status.Token == nil || got.Status.Token.ExpiresAt == nil || time.Until(got.Status.Token.ExpiresAt.Time) > 10*time.Minute {
		t.Errorf("status.token = %+v, want the plugin's 10m cacheDuration", got.Status.Token)
	}
	d, _, err := secretData(bg, c, ns, "plugin-in")
	if err != nil || d == nil {
		t.Fatalf("no copy: %v", err)
	}
	if err := w.pull(d); err != nil {
		t.Errorf("pull with the plugin's answer: %v", err)
	}
	bad := clusterReady(t, c, "plugin-out", metav1.ConditionFalse, v1alpha1.ReasonSourceInvalid, "0/1")
	if msg := meta.FindStatusCondition(bad.Status.Conditions, v1alpha1.ConditionReady).Message; !strings.Contains(msg, "the only directory plugins run from") {
		t.Errorf("message %q does not say where plugins may run from", msg)
	}
}
