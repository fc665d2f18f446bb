// Package manager builds regcred's controller-runtime manager: the cache
// restricted to what regcred manages, client limits, metrics and health
// endpoints, leader election, and the controllers.
package manager

import (
	"context"
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/controller"
)

// Options configure the manager.
type Options struct {
	RestConfig *rest.Config
	// Namespace is regcred's own namespace.
	Namespace string
	// MetricsAddr serves Prometheus metrics; "0" disables.
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz; "0" disables.
	ProbeAddr string
	// LeaderElect makes one replica reconcile at a time.
	LeaderElect bool
	// QPS and Burst limit the client's requests to the API server.
	QPS   float32
	Burst int
	// MaxConcurrentReconciles of the namespace controller.
	MaxConcurrentReconciles int
}

// Scheme holds the built-in types and regcred's.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// New builds a manager with regcred's controllers set up.
func New(ctx context.Context, opts Options) (ctrl.Manager, error) {
	if opts.RestConfig == nil {
		return nil, fmt.Errorf("no client configuration")
	}
	cfg := rest.CopyConfig(opts.RestConfig)
	if opts.QPS > 0 {
		cfg.QPS = opts.QPS
	}
	if opts.Burst > 0 {
		cfg.Burst = opts.Burst
	}
	cfg.UserAgent = "regcred-manager"
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         controller.CacheOptions(),
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.ProbeAddr,
		LeaderElection:                opts.LeaderElect,
		LeaderElectionID:              "regcred-manager",
		LeaderElectionNamespace:       opts.Namespace,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	if err := controller.Setup(ctx, mgr, controller.Options{Namespace: opts.Namespace, MaxConcurrentReconciles: opts.MaxConcurrentReconciles}); err != nil {
		return nil, fmt.Errorf("set up controllers: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("cache", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("cache not synced")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return mgr, nil
}
