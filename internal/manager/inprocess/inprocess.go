// Package inprocess runs a regcred manager inside the calling process, as
// `regcred manager` would run it, with its webhook registered with the API
// server by URL on loopback. The demo, the end-to-end tests and the load
// tools share it; in a cluster the manager runs as Pods instead.
package inprocess

import (
	"context"
	"fmt"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/manager"
	"regcred.dev/regcred/internal/nodecreds"
)

// Options of Start.
type Options struct {
	// Namespace is regcred's own; created when missing.
	Namespace string
	// CertDir holds the webhook's serving certificate.
	CertDir string
	// FailurePolicy of the webhook registration ("" is Ignore).
	FailurePolicy string
	// MetricsAddr, "0" (the default) for none.
	MetricsAddr string
	// Cloud is how cloud sources reach their clouds.
	Cloud cloud.Env
	// Port of the webhook's server on 127.0.0.1; 0 picks a free one.
	Port int
	// NodeCredentials serves the kubelet credential broker beside the
	// webhook; nil does not.
	NodeCredentials *nodecreds.Options
	// PodInjection: manager.PodInjectionWebhook ("" too) or
	// manager.PodInjectionPolicy.
	PodInjection string
}

// Start starts the manager and returns once its webhook serves; the
// manager stops when ctx ends, and done is closed after it has.
func Start(ctx context.Context, cfg *rest.Config, opts Options) (done <-chan struct{}, err error) {
	if opts.MetricsAddr == "" {
		opts.MetricsAddr = "0"
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, err
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	port := opts.Port
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	mgr, err := manager.New(ctx, manager.Options{
		RestConfig: cfg, Namespace: opts.Namespace, MetricsAddr: opts.MetricsAddr, ProbeAddr: "0",
		Webhook: &manager.WebhookOptions{Host: "127.0.0.1", Port: port, CertDir: opts.CertDir, ManageCertificates: true, Register: true,
			FailurePolicy: opts.FailurePolicy},
		Cloud: opts.Cloud, PullFailureMetrics: true, NodeCredentials: opts.NodeCredentials, PodInjection: opts.PodInjection,
		Restartable: true,
	})
	if err != nil {
		return nil, err
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = mgr.Start(ctx)
	}()
	deadline := time.Now().Add(time.Minute)
	for mgr.GetWebhookServer().StartedChecker()(nil) != nil {
		if time.Now().After(deadline) {
			return stopped, fmt.Errorf("the webhook server did not start within a minute")
		}
		select {
		case <-stopped:
			return stopped, fmt.Errorf("the manager stopped before its webhook served")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return stopped, nil
}
