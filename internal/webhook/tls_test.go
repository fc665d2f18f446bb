package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func newTLS(t *testing.T, hosts ...string) (*TLS, client.Client, *time.Time) {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(scheme(t)).Build()
	url := "https://127.0.0.1:9443" + Path
	now := time.Now()
	tl := &TLS{
		Config: Config{Namespace: "regcred-system", SecretName: "regcred-webhook-tls", CertDir: t.TempDir(), Hosts: hosts,
			ConfigurationName: "regcred", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url},
			ManageCertificates: true, Register: true},
		Reader: c, Writer: c, Log: logr.Discard(),
	}
	tl.now = func() time.Time { return now }
	return tl, c, &now
}

func state(t *testing.T, c client.Client) (*corev1.Secret, *admissionregistrationv1.MutatingWebhookConfiguration) {
	t.Helper()
	var s corev1.Secret
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "regcred-system", Name: "regcred-webhook-tls"}, &s); err != nil {
		t.Fatal(err)
	}
	var m admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.Get(context.Background(), client.ObjectKey{Name: "regcred"}, &m); err != nil {
		t.Fatal(err)
	}
	return &s, &m
}

func parseCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// verify checks that the files the server serves chain to the bundle the
// API server trusts, for the host.
func verify(t *testing.T, tl *TLS, bundle []byte, host string, at time.Time) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(tl.Config.CertDir, "tls.crt"), filepath.Join(tl.Config.CertDir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("empty caBundle")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, CurrentTime: at}); err != nil {
		t.Fatalf("served certificate does not verify against the caBundle: %v", err)
	}
}

func TestTLSIssuesAndRegisters(t *testing.T) {
	tl, c, now := newTLS(t, "127.0.0.1")
	next, err := tl.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s, m := state(t, c)
	if string(m.Webhooks[0].ClientConfig.CABundle) != string(s.Data[keyCA]) {
		t.Error("caBundle is not the Secret's CA")
	}
	verify(t, tl, m.Webhooks[0].ClientConfig.CABundle, "127.0.0.1", *now)
	if next.After(now.Add(checkInterval)) {
		t.Errorf("next check %s is later than the check interval", next)
	}
	// Nothing to do: the same Secret, no write.
	rv := s.ResourceVersion
	if _, err := tl.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2, _ := state(t, c)
	if s2.ResourceVersion != rv {
		t.Error("a second Ensure rewrote a current Secret")
	}
}

func TestTLSRotatesServingCertificateBeforeExpiry(t *testing.T) {
	tl, c, now := newTLS(t, "regcred-webhook.regcred-system.svc", "regcred-webhook.regcred-system.svc.cluster.local")
	if _, err := tl.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	before, _ := state(t, c)
	oldLeaf := parseCerts(t, before.Data[keyCert])[0]
	// Past the renewal point (two thirds of the life), still before expiry.
	*now = oldLeaf.NotAfter.Add(-servingValidity / 4)
	if _, err := tl.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, m := state(t, c)
	newLeaf := parseCerts(t, after.Data[keyCert])[0]
	if newLeaf.SerialNumber.Cmp(oldLeaf.SerialNumber) == 0 {
		t.Fatal("serving certificate not renewed")
	}
	if string(after.Data[keyCA]) != string(before.Data[keyCA]) {
		t.Error("CA changed although it is far from expiry")
	}
	verify(t, tl, m.Webhooks[0].ClientConfig.CABundle, "regcred-webhook.regcred-system.svc", *now)
}

func TestTLSRotatesCAWithOverlap(t *testing.T) {
	tl, c, now := newTLS(t, "127.0.0.1")
	if _, err := tl.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	before, _ := state(t, c)
	oldCA := parseCerts(t, before.Data[keyCA])[0]
	*now = oldCA.NotAfter.Add(-caValidity / 10)
	if _, err := tl.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, m := state(t, c)
	bundle := parseCerts(t, m.Webhooks[0].ClientConfig.CABundle)
	if len(bundle) != 2 || bundle[1].SerialNumber.Cmp(oldCA.SerialNumber) != 0 || bundle[0].SerialNumber.Cmp(oldCA.SerialNumber) == 0 {
		t.Fatalf("caBundle should hold the new CA, then the old one; has %d certificates", len(bundle))
	}
	verify(t, tl, m.Webhooks[0].ClientConfig.CABundle, "127.0.0.1", *now)
	_ = after
}

func TestTLSReissuesForNewHosts(t *testing.T) {
	tl, c, now := newTLS(t, "127.0.0.1")
	if _, err := tl.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	tl.Config.Hosts = []string{"localhost", "127.0.0.1"}
	if _, err := tl.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, m := state(t, c)
	verify(t, tl, m.Webhooks[0].ClientConfig.CABundle, "localhost", *now)
	// Hosts in another order are the same hosts: no new certificate.
	s, _ := state(t, c)
	tl.Config.Hosts = []string{"127.0.0.1", "localhost"}
	if _, err := tl.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2, _ := state(t, c)
	if s2.ResourceVersion != s.ResourceVersion {
		t.Error("reordered hosts caused a new certificate")
	}
}

func TestTLSRestoresDeletedSecretAndFiles(t *testing.T) {
	tl, c, _ := newTLS(t, "127.0.0.1")
	if _, err := tl.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, _ := state(t, c)
	if err := c.Delete(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(tl.Config.CertDir, "tls.crt")); err != nil {
		t.Fatal(err)
	}
	if _, err := tl.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2, m := state(t, c)
	if string(m.Webhooks[0].ClientConfig.CABundle) != string(s2.Data[keyCA]) {
		t.Error("caBundle not updated to the new CA")
	}
	if _, err := os.Stat(filepath.Join(tl.Config.CertDir, "tls.crt")); err != nil {
		t.Error("certificate file not restored")
	}
}

// With the configuration installed by the chart, regcred keeps its
// caBundle and nothing else: Helm's fields stay Helm's.
func TestTLSInjectsCABundleIntoInstalledConfiguration(t *testing.T) {
	tl, c, _ := newTLS(t, "regcred-webhook.regcred-system.svc")
	tl.Config.Register = false
	ctx := context.Background()
	if _, err := tl.Ensure(ctx); !errors.Is(err, ErrConfigurationMissing) {
		t.Fatalf("Ensure without a configuration: %v, want ErrConfigurationMissing", err)
	}
	if _, err := os.Stat(filepath.Join(tl.Config.CertDir, "tls.crt")); err != nil {
		t.Fatalf("the serving certificate was not written before the configuration exists: %v", err)
	}
	installed := tl.Config.Configuration(nil)
	installed.Labels = map[string]string{"app.kubernetes.io/managed-by": "Helm"}
	fail := admissionregistrationv1.Fail
	installed.Webhooks[0].FailurePolicy = &fail
	installed.Webhooks = append(installed.Webhooks, *installed.Webhooks[0].DeepCopy())
	installed.Webhooks[1].Name = "second.regcred.dev"
	if err := c.Create(ctx, installed); err != nil {
		t.Fatal(err)
	}
	if _, err := tl.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	s, m := state(t, c)
	for _, w := range m.Webhooks {
		if string(w.ClientConfig.CABundle) != string(s.Data[keyCA]) {
			t.Errorf("webhook %s: caBundle is not the Secret's CA", w.Name)
		}
	}
	if *m.Webhooks[0].FailurePolicy != admissionregistrationv1.Fail || m.Labels["app.kubernetes.io/managed-by"] != "Helm" || len(m.Webhooks) != 2 {
		t.Errorf("regcred changed more than the caBundle: %+v", m)
	}
	rv := m.ResourceVersion
	if _, err := tl.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if _, m2 := state(t, c); m2.ResourceVersion != rv {
		t.Error("a second Ensure rewrote a current configuration")
	}
}
