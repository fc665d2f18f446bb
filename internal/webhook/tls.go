package webhook

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/logkeys"
	"regcred.dev/regcred/internal/pki"
)

// +kubebuilder:rbac:groups=regcred.dev,resources=clusterimagemirrors,verbs=get;list;watch
// The TLS Secret, in regcred's namespace: read and renewed by name;
// create cannot be limited to a name (the object has none before it is
// created). The cluster-wide Secret rules cover it too; this Role states
// the need on its own.
// +kubebuilder:rbac:groups="",namespace=regcred-system,resources=secrets,resourceNames=regcred-webhook-tls,verbs=get;update
// +kubebuilder:rbac:groups="",namespace=regcred-system,resources=secrets,verbs=create

const (
	caValidity      = 10 * 365 * 24 * time.Hour
	servingValidity = 365 * 24 * time.Hour
	// A serving certificate is renewed when a third of its life is left, a
	// CA when a fifth is: well before anything expires, and with the old CA
	// kept in the bundle until clients have the new one.
	servingRenewFraction = 3
	caRenewFraction      = 5
	// checkInterval bounds the time between checks, so a Secret deleted by
	// hand is restored and a clock jump is noticed.
	checkInterval = time.Hour

	keyCA     = "ca.crt"
	keyCAKey  = "ca.key"
	keyCert   = corev1.TLSCertKey
	keyKey    = corev1.TLSPrivateKeyKey
	managedBy = "regcred"
)

// Config describes the webhook's TLS and registration.
type Config struct {
	// Namespace is regcred's namespace, where the TLS Secret lives.
	Namespace string
	// SecretName holds the CA and the serving certificate.
	SecretName string
	// CertDir is where the webhook server reads tls.crt and tls.key.
	CertDir string
	// Hosts are the DNS names and IP addresses of the serving certificate.
	Hosts []string
	// ConfigurationName is the MutatingWebhookConfiguration's name.
	ConfigurationName string
	// ClientConfig says how the API server reaches the webhook (URL or
	// Service), without the CA bundle.
	ClientConfig admissionregistrationv1.WebhookClientConfig
	// FailurePolicy is Ignore by default: a webhook outage never blocks
	// Pods (the ServiceAccount patch is the backstop).
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// TimeoutSeconds for the API server's call.
	TimeoutSeconds int32
	// ManageCertificates generates and rotates the CA and serving
	// certificate; false when cert-manager or mounted files provide them.
	ManageCertificates bool
	// Register creates and updates the MutatingWebhookConfiguration.
	// Without it, ManageCertificates keeps only the caBundle of a
	// configuration installed by the Helm chart or config/default, whose
	// deletion then goes with the installation's.
	Register bool
	// NoPodWebhook: Pods are injected by admission policies instead
	// (regcred manager --pod-injection=policy). No configuration is kept,
	// and with Register the one regcred registered before is removed; the
	// certificates still serve the kubelet credential broker.
	NoPodWebhook bool
}

// TLS keeps the webhook's certificates and configuration current. Every
// replica runs it; writes use optimistic concurrency, so replicas agree on
// one CA.
type TLS struct {
	Config Config
	// Reader reads from the API server directly (the TLS Secret is not in
	// the manager's cache).
	Reader client.Reader
	Writer client.Writer
	Log    logr.Logger

	now func() time.Time
}

// Ensure makes the certificates current, writes them to CertDir and
// registers the webhook. It returns when it should run again.
func (t *TLS) Ensure(ctx context.Context) (time.Time, error) {
	now := time.Now()
	if t.now != nil {
		now = t.now()
	}
	next := now.Add(checkInterval)
	var caBundle []byte
	if t.Config.ManageCertificates {
		secret, err := t.ensureSecret(ctx, now)
		if err != nil {
			return now.Add(10 * time.Second), err
		}
		if err := writeCertFiles(t.Config.CertDir, secret.Data[keyCert], secret.Data[keyKey]); err != nil {
			return now.Add(10 * time.Second), err
		}
		caBundle = secret.Data[keyCA]
		if renew := renewalTime(secret.Data[keyCert], servingRenewFraction); renew.Before(next) {
			next = renew
		}
	}
	switch {
	case t.Config.NoPodWebhook && t.Config.Register:
		if err := t.removeConfiguration(ctx); err != nil {
			return now.Add(10 * time.Second), err
		}
	case t.Config.NoPodWebhook:
	case t.Config.Register:
		if err := t.ensureConfiguration(ctx, caBundle); err != nil {
			return now.Add(10 * time.Second), err
		}
	case t.Config.ManageCertificates:
		if err := t.injectCABundle(ctx, caBundle); err != nil {
			// The chart creates the configuration beside the Deployment;
			// look again soon.
			return now.Add(2 * time.Second), err
		}
	}
	return next, nil
}

// Start keeps Ensure running until ctx ends.
func (t *TLS) Start(ctx context.Context) error {
	for {
		next, err := t.Ensure(ctx)
		if err != nil {
			t.Log.Error(err, "webhook TLS")
		}
		wait := time.Until(next)
		if wait < time.Second {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// NeedLeaderElection is false: every replica serves the webhook.
func (t *TLS) NeedLeaderElection() bool { return false }

func (t *TLS) ensureSecret(ctx context.Context, now time.Time) (*corev1.Secret, error) {
	key := client.ObjectKey{Namespace: t.Config.Namespace, Name: t.Config.SecretName}
	for attempt := 0; attempt < 5; attempt++ {
		var cur corev1.Secret
		err := t.Reader.Get(ctx, key, &cur)
		switch {
		case apierrors.IsNotFound(err):
			data, err := t.issue(nil, now)
			if err != nil {
				return nil, err
			}
			s := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{"app.kubernetes.io/managed-by": managedBy}},
				Type:       corev1.SecretTypeTLS,
				Data:       data,
			}
			if err := t.Writer.Create(ctx, s); err != nil {
				if apierrors.IsAlreadyExists(err) {
					continue // another replica won: use its
				}
				return nil, fmt.Errorf("create webhook TLS Secret: %w", err)
			}
			t.Log.Info("created webhook CA and serving certificate", logkeys.Secret, key.String())
			return s, nil
		case err != nil:
			return nil, fmt.Errorf("read webhook TLS Secret: %w", err)
		}
		if !t.needsRenewal(cur.Data, now) {
			return &cur, nil
		}
		data, err := t.issue(cur.Data, now)
		if err != nil {
			return nil, err
		}
		updated := cur.DeepCopy()
		updated.Data = data
		if err := t.Writer.Update(ctx, updated); err != nil {
			if apierrors.IsConflict(err) {
				continue
			}
			return nil, fmt.Errorf("update webhook TLS Secret: %w", err)
		}
		t.Log.Info("renewed webhook certificates", logkeys.Secret, key.String())
		return updated, nil
	}
	return nil, errors.New("webhook TLS Secret keeps changing under us")
}

func (t *TLS) needsRenewal(data map[string][]byte, now time.Time) bool {
	ca, err := pki.Parse(firstPEM(data[keyCA]), data[keyCAKey])
	if err != nil {
		return true
	}
	leaf, err := pki.Parse(data[keyCert], data[keyKey])
	if err != nil {
		return true
	}
	if !now.Before(renewalTime(data[keyCert], servingRenewFraction)) || !now.Before(renewalTime(ca.CertPEM, caRenewFraction)) {
		return true
	}
	if err := leaf.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		return true
	}
	have, want := certHosts(leaf.Cert), slices.Clone(t.Config.Hosts)
	slices.Sort(have)
	slices.Sort(want)
	return !slices.Equal(have, want)
}

// issue makes a serving certificate, reusing the CA in old while it is far
// from expiry; a new CA keeps the old one in the bundle.
func (t *TLS) issue(old map[string][]byte, now time.Time) (map[string][]byte, error) {
	var ca *pki.KeyPair
	bundle := []byte(nil)
	if old != nil {
		if prev, err := pki.Parse(firstPEM(old[keyCA]), old[keyCAKey]); err == nil {
			if now.Before(renewalTime(prev.CertPEM, caRenewFraction)) {
				ca = prev
				bundle = old[keyCA]
			} else if now.Before(prev.Cert.NotAfter) {
				bundle = prev.CertPEM // still valid: trusted until clients have the new CA
			}
		}
	}
	if ca == nil {
		var err error
		if ca, err = pki.NewCAAt("regcred-webhook-ca", now, caValidity); err != nil {
			return nil, err
		}
		bundle = append(append([]byte(nil), ca.CertPEM...), bundle...)
	}
	leaf, err := ca.IssueServingAt(t.Config.Hosts, now, servingValidity)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{keyCA: bundle, keyCAKey: ca.KeyPEM, keyCert: leaf.CertPEM, keyKey: leaf.KeyPEM}, nil
}

func certHosts(c *x509.Certificate) []string {
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// renewalTime is when 1/fraction of the certificate's life is left.
func renewalTime(certPEM []byte, fraction int64) time.Time {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return time.Time{}
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}
	}
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Add(-life / time.Duration(fraction))
}

func firstPEM(b []byte) []byte {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil
	}
	return pem.EncodeToMemory(block)
}

// writeCertFiles replaces tls.crt and tls.key atomically, only when they
// changed; the webhook server's certificate watcher picks them up.
func writeCertFiles(dir string, cert, key []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, data := range map[string][]byte{keyCert: cert, keyKey: key} {
		path := filepath.Join(dir, name)
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
			continue
		}
		tmp, err := os.CreateTemp(dir, "."+name+"-")
		if err != nil {
			return err
		}
		if _, err := tmp.Write(data); err != nil {
			_ = tmp.Close()
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return err
		}
	}
	return nil
}

// CABundle is the PEM bundle that verifies the webhook's server now: the
// CA regcred manages, or, with certificates from elsewhere
// (cert-manager), the ca.crt beside them in CertDir.
func (t *TLS) CABundle(ctx context.Context) ([]byte, error) {
	if !t.Config.ManageCertificates {
		b, err := os.ReadFile(filepath.Join(t.Config.CertDir, keyCA))
		if err != nil {
			return nil, fmt.Errorf("the serving certificate's CA: %w (the node agents need %s beside tls.crt)", err, keyCA)
		}
		return b, nil
	}
	var s corev1.Secret
	if err := t.Reader.Get(ctx, client.ObjectKey{Namespace: t.Config.Namespace, Name: t.Config.SecretName}, &s); err != nil {
		return nil, err
	}
	if len(s.Data[keyCA]) == 0 {
		return nil, fmt.Errorf("Secret %s/%s has no %s yet", t.Config.Namespace, t.Config.SecretName, keyCA)
	}
	return s.Data[keyCA], nil
}
