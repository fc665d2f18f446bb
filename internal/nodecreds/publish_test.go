package nodecreds

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/pki"
)

func TestPublish(t *testing.T) {
	ca1 := must(pki.NewCA("one", time.Hour))
	ca2 := must(pki.NewCA("two", time.Hour))
	var writes atomic.Int64
	count := func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		writes.Add(1)
		return c.Update(ctx, obj, opts...)
	}
	c := fake.NewClientBuilder().WithScheme(must(credential.Scheme())).WithInterceptorFuncs(interceptor.Funcs{
		Update: count,
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			writes.Add(1)
			return c.Create(ctx, obj, opts...)
		}}).Build()
	bundle := ca1.CertPEM
	p := &Publisher{Reader: c, Client: c, Namespace: regcredNS, ServerName: "regcred-webhook.regcred-system.svc", Log: logr.Discard(),
		CA: func(context.Context) ([]byte, error) { return bundle, nil }}
	ctx := context.Background()
	get := func() *corev1.ConfigMap {
		var cm corev1.ConfigMap
		if err := c.Get(ctx, client.ObjectKey{Namespace: regcredNS, Name: ConfigMapName}, &cm); err != nil {
			t.Fatal(err)
		}
		return &cm
	}
	if err := p.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if cm := get(); cm.Data[CAFile] != string(ca1.CertPEM) || cm.Data[ServerNameFile] != p.ServerName {
		t.Errorf("ConfigMap %v", cm.Data)
	}
	if err := p.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if n := writes.Load(); n != 1 {
		t.Errorf("%d writes, want 1: unchanged content is not rewritten", n)
	}
	// Rotation: both CAs during the overlap.
	bundle = append(append([]byte{}, ca1.CertPEM...), ca2.CertPEM...)
	if err := p.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if cm := get(); cm.Data[CAFile] != string(bundle) || writes.Load() != 2 {
		t.Errorf("after rotation: %d writes, ca.crt %d bytes", writes.Load(), len(cm.Data[CAFile]))
	}
}

func TestPublishRefusesAnythingButCertificates(t *testing.T) {
	ca := must(pki.NewCA("one", time.Hour))
	for _, tc := range []struct {
		name   string
		bundle []byte
	}{
		{"certificate and its private key", append(append([]byte{}, ca.CertPEM...), ca.KeyPEM...)},
		{"private key first", append(append([]byte{}, ca.KeyPEM...), ca.CertPEM...)},
		{"private key alone", ca.KeyPEM},
		{"empty", nil},
		{"not PEM", []byte("hello")},
		{"a certificate then garbage", append(append([]byte{}, ca.CertPEM...), []byte("garbage")...)},
		{"a CERTIFICATE block that is not one", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(must(credential.Scheme())).Build()
			p := &Publisher{Reader: c, Client: c, Namespace: regcredNS, Log: logr.Discard(), CA: func(context.Context) ([]byte, error) { return tc.bundle, nil }}
			err := p.Publish(context.Background())
			if err == nil {
				t.Fatal("published")
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), string(ca.KeyPEM)) {
				t.Errorf("the error quotes the key: %v", err)
			}
			var cm corev1.ConfigMap
			if err := c.Get(context.Background(), client.ObjectKey{Namespace: regcredNS, Name: ConfigMapName}, &cm); !apierrors.IsNotFound(err) {
				t.Errorf("ConfigMap written: %v", err)
			}
		})
	}
}
