package nodecreds

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Publisher keeps the ConfigMap the node agents read current: the CA
// bundle that verifies the broker and the name its certificate is for.
// Nothing in it is secret; the agents need no API access to read it (the
// DaemonSet mounts it).
type Publisher struct {
	// Reader reads the ConfigMap live (the API reader): the manager's
	// cache holds no ConfigMaps, and its RBAC grants no list or watch.
	Reader    client.Reader
	Client    client.Client
	Namespace string
	// ServerName is the name the broker's certificate is for, as the
	// plugin must verify it ("" when the webhook is registered by URL).
	ServerName string
	// CA returns the PEM bundle that verifies the broker now.
	CA  func(ctx context.Context) ([]byte, error)
	Log logr.Logger
	// Interval between checks (default 1m; 5s after a failure).
	Interval time.Duration
}

// Start publishes until ctx ends.
func (p *Publisher) Start(ctx context.Context) error {
	interval := p.Interval
	if interval == 0 {
		interval = time.Minute
	}
	for {
		wait := interval
		if err := p.Publish(ctx); err != nil {
			p.Log.Info("could not publish the broker's CA for the node agents; retrying", "error", err.Error())
			wait = 5 * time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// NeedLeaderElection: every replica may publish the same content.
func (p *Publisher) NeedLeaderElection() bool { return false }

// Publish writes the ConfigMap when it differs.
func (p *Publisher) Publish(ctx context.Context) error {
	ca, err := p.CA(ctx)
	if err != nil {
		return err
	}
	if err := checkBundle(ca); err != nil {
		return err
	}
	want := map[string]string{CAFile: string(ca), ServerNameFile: p.ServerName}
	var cm corev1.ConfigMap
	err = p.Reader.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: ConfigMapName}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: ConfigMapName,
			Labels: map[string]string{"app.kubernetes.io/name": "regcred", "app.kubernetes.io/component": "node-credentials"}}, Data: want}
		if err := p.Client.Create(ctx, &cm); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		return nil
	case err != nil:
		return err
	}
	if cm.Data[CAFile] == want[CAFile] && cm.Data[ServerNameFile] == want[ServerNameFile] {
		return nil
	}
	cm.Data = want
	return p.Client.Update(ctx, &cm)
}

// checkBundle refuses to publish anything but certificates: a private
// key must never reach a ConfigMap.
func checkBundle(b []byte) error {
	rest := bytes.TrimSpace(b)
	n := 0
	for len(rest) > 0 {
		block, r := pem.Decode(rest)
		if block == nil || block.Type != "CERTIFICATE" {
			return fmt.Errorf("the broker's CA bundle holds something other than certificates")
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("the broker's CA bundle: %v", err)
		}
		n++
		rest = bytes.TrimSpace(r)
	}
	if n == 0 {
		return fmt.Errorf("the broker's CA bundle is empty")
	}
	return nil
}
