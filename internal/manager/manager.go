// Package manager builds regcred's controller-runtime manager: the cache
// restricted to what regcred manages, client limits, metrics and health
// endpoints, leader election, and the controllers.
package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/config"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/controller"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/credential/cachefeed"
	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/policy"
	"regcred.dev/regcred/internal/registry"
	"regcred.dev/regcred/internal/webhook"
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
	// PprofAddr serves net/http/pprof (memory measurements); "" or "0"
	// disables. Profiles show object contents: loopback only.
	PprofAddr string
	// LeaderElect makes one replica reconcile at a time.
	LeaderElect bool
	// Lease tunes the election; zero fields take DefaultLease's.
	Lease Lease
	// QPS and Burst limit the client's requests to the API server.
	QPS   float32
	Burst int
	// MaxConcurrentReconciles of the namespace controller.
	MaxConcurrentReconciles int
	// Webhook configures the Pod admission webhook; nil disables it.
	Webhook *WebhookOptions
	// Cloud is how cloud sources reach their clouds; the zero value uses
	// the system's roots.
	Cloud cloud.Env
	// Tokens tunes the refresh of cloud tokens.
	Tokens cloud.CacheOptions
	// PluginDir is where credential provider plugins may run from; empty
	// turns plugin sources off.
	PluginDir string
	// TenantEndpointHosts are the hosts RegistryCredentials' endpoint
	// overrides may name; empty refuses every override.
	TenantEndpointHosts []string
	// TenantAllowPrivateNetworks lifts the guard on RegistryCredentials'
	// probes and cloud endpoints for these CIDRs.
	TenantAllowPrivateNetworks []string
	// PullFailureMetrics watches the kubelet's pull-failure Events for
	// regcred_image_pull_failures_total.
	PullFailureMetrics bool
	// Registry configures spec.verify probes (CAs to trust).
	Registry []registry.Option
	// NodeCredentials serves the kubelet credential broker on the
	// webhook's server; nil disables it.
	NodeCredentials *nodecreds.Options
	// PodInjection is how Pods get their pull Secrets and mirror
	// rewrites: PodInjectionWebhook (default) or PodInjectionPolicy.
	PodInjection string
	// Restartable lets a process run managers one after another (tests,
	// the load tools): controller names are checked for uniqueness per
	// process otherwise.
	Restartable bool
	// PodInjectionExclude are namespaces the policies never touch,
	// besides the always-excluded ones and regcred's.
	PodInjectionExclude []string
}

// How Pods are injected.
const (
	// PodInjectionWebhook: regcred's admission webhook, which also
	// creates a missing Secret before the Pod is admitted.
	PodInjectionWebhook = "webhook"
	// PodInjectionPolicy: MutatingAdmissionPolicies regcred generates;
	// the API server injects, with regcred down too.
	PodInjectionPolicy = "policy"
)

// Lease is how the replicas elect their leader. A standby takes over a
// killed leader's lease once LeaseDuration has passed since its last
// renewal (plus up to RetryPeriod); a leader that cannot renew for
// RenewDeadline, say while the API server is away, stops (and its Pod
// restarts as a standby), so that two never act at once.
type Lease struct {
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// cacheSyncTimeout bounds how long a controller waits for its sources'
// first lists before the manager gives up and exits.
const cacheSyncTimeout = 10 * time.Minute

// DefaultLease hands a SIGKILLed leader's work to a standby in under 10
// seconds (measured with bench/scale at 10,000 namespaces: elected 9.4 s
// after the kill, a namespace created then set up 0.3 s later). The cost
// is that a leader cut off from the API server for more than 6 seconds
// stops, and its Pod restarts as a standby. That is cheap because
// standbys are warm (their caches synced and their queues filled, see
// EnableWarmup below): with the API server down 8 s during a 10,000
// namespace fan-out, the standby took over and the fan-out still ended
// at 0.99x the rate-limit bound with 2.2% more writes than the minimum.
// controller-runtime's 15s/10s/2s rides out such an outage but leaves a
// killed leader's work for up to 17 s; the flags restore it.
var DefaultLease = Lease{LeaseDuration: 8 * time.Second, RenewDeadline: 6 * time.Second, RetryPeriod: 1 * time.Second}

// Validate says what is wrong with l.
func (l Lease) Validate() error {
	switch {
	case l.LeaseDuration <= 0 || l.RenewDeadline <= 0 || l.RetryPeriod <= 0:
		return fmt.Errorf("lease duration, renew deadline and retry period must be positive")
	case l.RenewDeadline >= l.LeaseDuration:
		return fmt.Errorf("the renew deadline (%s) must be shorter than the lease duration (%s): a leader must stop before a standby may start", l.RenewDeadline, l.LeaseDuration)
	case l.RetryPeriod >= l.RenewDeadline:
		return fmt.Errorf("the retry period (%s) must be shorter than the renew deadline (%s)", l.RetryPeriod, l.RenewDeadline)
	}
	return nil
}

func (l Lease) withDefaults() Lease {
	if l.LeaseDuration == 0 {
		l.LeaseDuration = DefaultLease.LeaseDuration
	}
	if l.RenewDeadline == 0 {
		l.RenewDeadline = DefaultLease.RenewDeadline
	}
	if l.RetryPeriod == 0 {
		l.RetryPeriod = DefaultLease.RetryPeriod
	}
	return l
}

// cacheQPSFactor multiplies the client limits for the cache's informers.
// They list only when they start or relist after a watch expired, in
// small trimmed pages (controller.CacheOptions): 30,000 managed Secrets
// are 3,000 pages, 15 seconds at the writers' 200/s, during which the
// manager is not ready. Watches are not rate limited at all.
const cacheQPSFactor = 10

// WebhookOptions configure the admission webhook.
type WebhookOptions struct {
	// Host to listen on. When set (say 127.0.0.1 for a local control
	// plane) the webhook is registered by URL https://Host:Port; when
	// empty it listens everywhere and is registered by Service.
	Host string
	Port int
	// ServiceName is the Service in front of the webhook (in-cluster).
	ServiceName string
	// CertDir holds tls.crt and tls.key.
	CertDir string
	// ManageCertificates: regcred's own CA and rotation; false when
	// cert-manager (or another tool) writes CertDir and the caBundle.
	ManageCertificates bool
	// Register the MutatingWebhookConfiguration.
	Register bool
	// ConfigurationName of the MutatingWebhookConfiguration.
	ConfigurationName string
	// FailurePolicy: Ignore (default) or Fail.
	FailurePolicy string
	// TimeoutSeconds of the API server's call (1-30, default 5).
	TimeoutSeconds int32
}

// Validate says what is wrong with the options, naming the flag of
// `regcred manager` that sets each.
func (w *WebhookOptions) Validate() error {
	switch w.FailurePolicy {
	case "", string(admissionregistrationv1.Ignore), string(admissionregistrationv1.Fail):
	default:
		return fmt.Errorf("--webhook-failure-policy %q: use Ignore or Fail", w.FailurePolicy)
	}
	if w.TimeoutSeconds < 0 || w.TimeoutSeconds > 30 {
		return fmt.Errorf("--webhook-timeout-seconds %d: must be between 1 and 30", w.TimeoutSeconds)
	}
	return nil
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
	mgr, err := newManager(cfg, opts)
	if err != nil {
		return nil, err
	}
	// One catalogue, compiled once per change, for the controllers, the
	// webhook and the pull-failure watch.
	cat := credential.NewCatalogue(opts.Namespace)
	policies, err := addPolicyWriter(mgr, opts, cat)
	if err != nil {
		return nil, err
	}
	if err := cachefeed.Start(ctx, mgr.GetCache(), cat); err != nil {
		return nil, err
	}
	if err := setupParts(ctx, mgr, cfg, opts, cat, policies); err != nil {
		return nil, err
	}
	return mgr, addChecks(mgr, opts, cat)
}

// policyOptions are the admission policies' options; nil when the
// webhook injects.
func policyOptions(opts Options) *policy.Options {
	if opts.PodInjection != PodInjectionPolicy {
		return nil
	}
	failure := admissionregistrationv1.Ignore
	if opts.Webhook != nil && opts.Webhook.FailurePolicy != "" {
		failure = admissionregistrationv1.FailurePolicyType(opts.Webhook.FailurePolicy)
	}
	return &policy.Options{Namespace: opts.Namespace, FailurePolicy: failure, ExcludeNamespaces: opts.PodInjectionExclude}
}

// addPolicyWriter keeps the generated MutatingAdmissionPolicies current,
// on the leader, and returns their rendering; nil when the webhook
// injects, and the writer then removes what an earlier policy mode left.
func addPolicyWriter(mgr ctrl.Manager, opts Options, cat *credential.Catalogue) (*controller.PolicyRender, error) {
	w := &controller.PolicyWriter{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Remove: true, Log: ctrl.Log.WithName("admission-policies")}
	if o := policyOptions(opts); o != nil {
		w.Render, w.Remove, w.Prefix = controller.NewPolicyRender(cat, *o), false, o.Prefix
	}
	w.Register()
	return w.Render, mgr.Add(w)
}

func newManager(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	scheme, err := credential.Scheme()
	if err != nil {
		return nil, err
	}
	var webhookServer crwebhook.Server
	if w := opts.Webhook; w != nil {
		webhookServer = crwebhook.NewServer(crwebhook.Options{Host: w.Host, Port: w.Port, CertDir: w.CertDir})
	}
	lease := opts.Lease.withDefaults()
	if err := lease.Validate(); err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		WebhookServer: webhookServer,
		Scheme:        scheme,
		Cache:         controller.CacheOptions(),
		// A standby's controllers fill their queues from its caches
		// (every namespace at low priority, later changes at normal
		// priority), so when it is elected its workers start on the
		// changes the dead leader left, not behind a resync of all.
		// A standby warms up while the leader fans out, when the API
		// server is busiest: its sources' first lists at 10,000
		// namespaces took over controller-runtime's 2 minutes on two busy
		// cores, and a timeout restarts the process into the same lists.
		Controller: config.Controller{EnableWarmup: ptr.To(true), CacheSyncTimeout: cacheSyncTimeout, SkipNameValidation: ptr.To(opts.Restartable)},
		NewCache: func(config *rest.Config, o cache.Options) (cache.Cache, error) {
			config = rest.CopyConfig(config)
			config.QPS, config.Burst = config.QPS*cacheQPSFactor, config.Burst*cacheQPSFactor
			return cache.New(config, o)
		},
		LeaseDuration:                 &lease.LeaseDuration,
		RenewDeadline:                 &lease.RenewDeadline,
		RetryPeriod:                   &lease.RetryPeriod,
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.ProbeAddr,
		PprofBindAddress:              opts.PprofAddr,
		LeaderElection:                opts.LeaderElect,
		LeaderElectionID:              "regcred-manager",
		LeaderElectionNamespace:       opts.Namespace,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	return mgr, nil
}

// setupParts adds the controllers, the pull-failure watch and the
// webhook, all asking cat.
func setupParts(ctx context.Context, mgr ctrl.Manager, cfg *rest.Config, opts Options, cat *credential.Catalogue, policies *controller.PolicyRender) error {
	ensurer, err := controller.Setup(ctx, mgr, controller.Options{Namespace: opts.Namespace, MaxConcurrentReconciles: opts.MaxConcurrentReconciles,
		Cloud: opts.Cloud, Tokens: opts.Tokens, PluginDir: opts.PluginDir, Registry: opts.Registry, Catalogue: cat,
		TenantEndpointHosts: opts.TenantEndpointHosts, TenantAllowPrivateNetworks: opts.TenantAllowPrivateNetworks,
		PodInjectionPolicies: policies})
	if err != nil {
		return fmt.Errorf("set up controllers: %w", err)
	}
	if opts.PullFailureMetrics {
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		if err := mgr.Add(&controller.PullFailureWatch{Clientset: cs, Catalogue: cat, Log: ctrl.Log.WithName("pull-failures")}); err != nil {
			return err
		}
	}
	if opts.Webhook != nil {
		if err := setupWebhook(ctx, mgr, cfg, opts, cat, ensurer); err != nil {
			return fmt.Errorf("set up the webhook: %w", err)
		}
	}
	return nil
}

// addChecks: live once serving; ready once the caches and the catalogue
// hold what exists (and the webhook serves), so no Pod is admitted on
// half a catalogue.
func addChecks(mgr ctrl.Manager, opts Options, cat *credential.Catalogue) error {
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if opts.Webhook != nil {
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
	}
	if err := mgr.AddReadyzCheck("cache", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("cache not synced")
		}
		return nil
	}); err != nil {
		return err
	}
	return mgr.AddReadyzCheck("catalogue", func(*http.Request) error {
		select {
		case <-cat.Synced():
			return nil
		default:
			return fmt.Errorf("the credential catalogue is not loaded yet")
		}
	})
}

func setupWebhook(ctx context.Context, mgr ctrl.Manager, restCfg *rest.Config, opts Options, cat *credential.Catalogue, ensurer *controller.NamespaceReconciler) error {
	w := opts.Webhook
	if w.Port == 0 {
		w.Port = 9443
	}
	if w.ConfigurationName == "" {
		w.ConfigurationName = "regcred"
	}
	if w.ServiceName == "" {
		w.ServiceName = "regcred-webhook"
	}
	cfg := webhook.Config{
		Namespace:          opts.Namespace,
		SecretName:         "regcred-webhook-tls",
		CertDir:            w.CertDir,
		ConfigurationName:  w.ConfigurationName,
		FailurePolicy:      admissionregistrationv1.FailurePolicyType(w.FailurePolicy),
		TimeoutSeconds:     w.TimeoutSeconds,
		ManageCertificates: w.ManageCertificates,
		Register:           w.Register,
		NoPodWebhook:       opts.PodInjection == PodInjectionPolicy,
	}
	if err := w.Validate(); err != nil {
		return err
	}
	if w.Host != "" {
		url := fmt.Sprintf("https://%s%s", net.JoinHostPort(w.Host, strconv.Itoa(w.Port)), webhook.Path)
		cfg.ClientConfig.URL = &url
		cfg.Hosts = []string{w.Host}
	} else {
		path := webhook.Path
		port := int32(443)
		cfg.ClientConfig.Service = &admissionregistrationv1.ServiceReference{Namespace: opts.Namespace, Name: w.ServiceName, Path: &path, Port: &port}
		svc := w.ServiceName + "." + opts.Namespace + ".svc"
		cfg.Hosts = []string{svc, svc + ".cluster.local"}
	}

	tls := &webhook.TLS{Config: cfg, Reader: mgr.GetAPIReader(), Writer: mgr.GetClient(), Log: ctrl.Log.WithName("webhook-tls")}
	if w.ManageCertificates || w.Register {
		// The server reads its certificate when it starts: have one first.
		// A configuration installed beside the Deployment may not exist
		// yet: the runnable injects the caBundle when it does.
		if _, err := tls.Ensure(ctx); err != nil && !errors.Is(err, webhook.ErrConfigurationMissing) {
			return err
		}
		if err := mgr.Add(tls); err != nil {
			return err
		}
	}
	if !cfg.NoPodWebhook {
		h := &webhook.Handler{Reader: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Catalogue: cat, Secrets: ensurer,
			Log: ctrl.Log.WithName("webhook")}
		mgr.GetWebhookServer().Register(webhook.Path, &admission.Webhook{Handler: h, RecoverPanic: ptr.To(true)})
	}
	if opts.NodeCredentials != nil {
		return setupBroker(mgr, restCfg, opts, cfg, cat, ensurer, tls)
	}
	return nil
}

// brokerQPS limits the broker's own calls to the API server.
const brokerQPS = 500

// setupBroker serves the kubelet credential broker beside the webhook,
// with its certificate, adds each replica's status flusher, and
// publishes the CA the node agents need.
func setupBroker(mgr ctrl.Manager, restCfg *rest.Config, opts Options, cfg webhook.Config, cat *credential.Catalogue, src nodecreds.Source, tls *webhook.TLS) error {
	c := mgr.GetClient()
	// The broker's live reads (a TokenReview, the Pod) have a client and a
	// rate of their own: a burst of pulls must not starve the controllers,
	// nor wait behind them.
	bcfg := rest.CopyConfig(restCfg)
	bcfg.QPS, bcfg.Burst = brokerQPS, 2*brokerQPS
	bcfg.UserAgent = "regcred-manager/node-credentials"
	live, err := client.New(bcfg, client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return err
	}
	b, err := nodecreds.New(nodecreds.Deps{Catalogue: cat, Source: src, Pods: live, Cached: c,
		Review: func(ctx context.Context, r *authenticationv1.TokenReview) error { return live.Create(ctx, r) },
		Log:    ctrl.Log.WithName("node-credentials")}, *opts.NodeCredentials)
	if err != nil {
		return err
	}
	srv := mgr.GetWebhookServer()
	srv.Register(nodecreds.Path, b)
	srv.Register(nodecreds.HealthPath, b)
	interval := opts.NodeCredentials.FlushInterval
	if interval == 0 {
		interval = 30 * time.Second
	}
	if err := mgr.Add(&nodecreds.Flusher{Stats: b.Stats(), Client: c, Interval: interval, Log: ctrl.Log.WithName("node-credentials")}); err != nil {
		return err
	}
	serverName := ""
	if cfg.ClientConfig.Service != nil {
		serverName = cfg.Hosts[0]
	}
	return mgr.Add(&nodecreds.Publisher{Reader: mgr.GetAPIReader(), Client: c, Namespace: opts.Namespace, ServerName: serverName, CA: func(ctx context.Context) ([]byte, error) {
		return tls.CABundle(ctx)
	}, Log: ctrl.Log.WithName("node-credentials")})
}
