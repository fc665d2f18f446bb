package cli

import (
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"regcred.dev/regcred/internal/logkeys"
	"regcred.dev/regcred/internal/manager"
	"regcred.dev/regcred/internal/nodecreds"
)

type managerOptions struct {
	podInjection            string
	podInjectionExclude     []string
	kube                    kubeFlags
	namespace               string
	metricsAddr             string
	probeAddr               string
	pprofAddr               string
	leaderElect             bool
	lease                   manager.Lease
	qps                     float32
	burst                   int
	maxConcurrentReconciles int
	logLevel                string
	logFormat               string

	webhook               bool
	webhookHost           string
	webhookPort           int
	webhookServiceName    string
	webhookCertDir        string
	webhookCerts          string
	webhookRegister       bool
	webhookConfiguration  string
	webhookFailurePolicy  string
	pluginDir             string
	tenantEndpointHosts   []string
	tenantPrivateNets     []string
	pullFailureMetrics    bool
	webhookTimeoutSeconds int32
	reg                   *registryFlags

	nodeCredentials         bool
	nodeCredentialsAudience string
	nodeCredentialsCache    time.Duration
	nodeCredentialsQPS      float64
	nodeCredentialsBurst    int
}

const managerLong = `Run regcred's controllers against the cluster of the current kubeconfig
context (or the in-cluster configuration when run as a Pod).

For every RegistryCredential and ClusterRegistryCredential the manager keeps
a kubernetes.io/dockerconfigjson Secret in each selected namespace, adds it
to the selected ServiceAccounts' imagePullSecrets, follows rotations of the
source, repairs drift, and removes what it added when a credential or a
namespace selection goes away. It reacts to events only; there is no timed
resync.

Its cache holds full objects only for the Secrets it manages (labelled
regcred.dev/managed=true), so unrelated Secrets cost it no memory.

Every replica also serves the Pod admission webhook: it rewrites images by
ClusterImageMirror rules and adds exactly the pull Secrets whose registries
match the Pod's images, creating a missing Secret first. It manages its own
CA and serving certificate (--webhook-certs=self) and registers the
MutatingWebhookConfiguration "regcred" (by URL with --webhook-host, by
Service otherwise). Installed by the Helm chart, it runs with
--webhook-register=false: the chart owns the configuration (so uninstalling
removes it) and regcred keeps only its caBundle. See docs/webhook.md.

With --node-credentials every replica also serves the kubelet credential
broker on the webhook's port and certificate (path /node-credentials): a
node's regcred-credential-provider plugin sends the ServiceAccount token the
kubelet minted for a Pod with the image, the broker checks it with a
TokenReview for --node-credentials-audience and checks the Pod it is bound
to, and answers with the credentials of spec.delivery Node or Both that
select the Pod's namespace and ServiceAccount. No Secret is written. See
docs/node-credentials.md and "regcred kubelet-config".`

const managerExample = `  # Against your current context, with regcred's namespace created beforehand;
  # the API server must reach the webhook on 127.0.0.1 (a local control plane).
  regcred manager --namespace regcred-system --webhook-host 127.0.0.1

  # Controller only.
  regcred manager --webhook=false

  # In a Deployment with two replicas.
  regcred manager --leader-elect --metrics-bind-address :8080 --health-probe-bind-address :8081`

func newManagerCommand(s Streams, reg *registryFlags) *cobra.Command {
	o := managerOptions{reg: reg}
	cmd := &cobra.Command{
		Use:     "manager",
		Short:   "Run the controller and the Pod admission webhook",
		Long:    managerLong,
		Example: managerExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), s.Err)
		},
	}
	o.addFlags(cmd.Flags())
	o.addWebhookFlags(cmd.Flags())
	return cmd
}

func (o *managerOptions) addFlags(f *pflag.FlagSet) {
	o.kube.addFlags(f, false)
	f.StringVar(&o.namespace, "namespace", "regcred-system", "regcred's own namespace: holds ClusterRegistryCredential sources and the leader-election lease, and is never synced to")
	f.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", `address of the Prometheus metrics endpoint ("0" disables it)`)
	f.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", `address of /healthz and /readyz ("0" disables them)`)
	// Hidden: for memory measurements (docs/benchmarks.md); profiles hold object contents.
	f.StringVar(&o.pprofAddr, "pprof-bind-address", "", "address of net/http/pprof, for memory measurements (empty disables it)")
	_ = f.MarkHidden("pprof-bind-address")
	f.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader so that only one replica reconciles")
	f.DurationVar(&o.lease.LeaseDuration, "leader-election-lease-duration", manager.DefaultLease.LeaseDuration, "how long a standby waits for a silent leader before it takes over (a killed leader's work resumes after about this long)")
	f.DurationVar(&o.lease.RenewDeadline, "leader-election-renew-deadline", manager.DefaultLease.RenewDeadline, "how long the leader keeps trying to renew its lease before it stops, and restarts as a standby (shorter than the lease duration)")
	f.DurationVar(&o.lease.RetryPeriod, "leader-election-retry-period", manager.DefaultLease.RetryPeriod, "how often the leader renews and the standbys try to take the lease")
	f.Float32Var(&o.qps, "kube-api-qps", 200, "queries per second to the API server")
	f.IntVar(&o.burst, "kube-api-burst", 400, "burst of queries to the API server")
	f.IntVar(&o.maxConcurrentReconciles, "concurrency", 4, "namespaces reconciled at once")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info or error")
	f.StringVar(&o.logFormat, "log-format", "json", "log format: json or console")
	o.reg.addCAFiles(f, "registry-ca-file", "PEM file of CA certificates to trust, besides the system's, when probing registries for spec.verify (repeatable)")
	f.BoolVar(&o.pullFailureMetrics, "pull-failure-metrics", true, "watch the kubelet's pull-failure Events (Warning Events of Pods, selected by the API server) and count them in regcred_image_pull_failures_total")
	f.StringSliceVar(&o.tenantEndpointHosts, "tenant-endpoint-hosts", nil, "hosts (host or host:port, comma-separated) that RegistryCredentials' endpoint overrides (ecr.endpoint, gcp.tokenURL, acr.authorityHost) and a tenant Google key's token_uri may name; empty refuses every override")
	f.StringSliceVar(&o.tenantPrivateNets, "tenant-allow-private-networks", nil, "CIDRs (comma-separated) in loopback, link-local or private ranges that RegistryCredentials' spec.verify probes and cloud endpoints may reach; the rest of those ranges is refused for tenants (ClusterRegistryCredentials are not restricted)")
	f.StringVar(&o.pluginDir, "credential-provider-dir", "", "directory of kubelet credential provider plugins that credentials' spec.source.credentialProvider may run (plugins run as the manager, so only from here; empty turns plugin sources off)")
}

func (o *managerOptions) addWebhookFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.webhook, "webhook", true, "serve the Pod admission webhook (every replica serves it)")
	f.StringSliceVar(&o.podInjectionExclude, "pod-injection-exclude-namespaces", nil, "with --pod-injection=policy, namespaces (comma-separated) whose Pods the policies never touch, besides kube-system, kube-public, kube-node-lease and --namespace (the chart passes webhook.excludeNamespaces)")
	f.StringVar(&o.podInjection, "pod-injection", manager.PodInjectionWebhook, `how Pods get their pull Secrets and mirror rewrites: "webhook" (regcred's admission webhook, which also creates a missing Secret before admitting the Pod) or "policy" (MutatingAdmissionPolicies regcred generates and keeps current: the API server injects, with regcred down too; no Pod webhook is registered, and the one regcred registered is removed)`)
	f.StringVar(&o.webhookHost, "webhook-host", "", "address to serve the webhook on; when set (127.0.0.1 for a local control plane) the webhook is registered by URL, otherwise by Service")
	f.IntVar(&o.webhookPort, "webhook-port", 9443, "webhook port")
	f.StringVar(&o.webhookServiceName, "webhook-service-name", "regcred-webhook", "Service in front of the webhook, in --namespace")
	f.StringVar(&o.webhookCertDir, "webhook-cert-dir", filepath.Join(os.TempDir(), "regcred-webhook-certs"), "directory of the webhook's tls.crt and tls.key")
	f.StringVar(&o.webhookCerts, "webhook-certs", "self", `"self": regcred keeps a CA and serving certificate in the Secret regcred-webhook-tls, rotates them and keeps the caBundle current; "external": cert-manager (or another tool) writes --webhook-cert-dir and the caBundle`)
	f.BoolVar(&o.webhookRegister, "webhook-register", true, "create and update the MutatingWebhookConfiguration; false when the Helm chart or config/default installs it (with --webhook-certs=self regcred then keeps only its caBundle)")
	f.StringVar(&o.webhookConfiguration, "webhook-configuration-name", "regcred", "name of the MutatingWebhookConfiguration")
	f.StringVar(&o.webhookFailurePolicy, "webhook-failure-policy", "Ignore", "Ignore (a webhook outage never blocks Pods; the ServiceAccount patch is the backstop) or Fail")
	f.Int32Var(&o.webhookTimeoutSeconds, "webhook-timeout-seconds", 5, "how long the API server waits for the webhook (1-30)")
	f.BoolVar(&o.nodeCredentials, "node-credentials", false, "serve the kubelet credential broker on the webhook's server, for credentials with spec.delivery Node or Both (needs --webhook)")
	f.StringVar(&o.nodeCredentialsAudience, "node-credentials-audience", nodecreds.DefaultAudience, "audience of the ServiceAccount tokens the kubelet mints for regcred's plugin (the tokenAttributes of `regcred kubelet-config`); never one the API server accepts")
	f.DurationVar(&o.nodeCredentialsCache, "node-credentials-cache-duration", time.Minute, "how long a kubelet may reuse an answer (never past a token's expiry): how soon a rotation reaches new pulls")
	f.Float64Var(&o.nodeCredentialsQPS, "node-credentials-node-qps", 20, "requests per second each node may make to the broker for the Pods of one namespace")
	f.IntVar(&o.nodeCredentialsBurst, "node-credentials-node-burst", 40, "burst of requests each node may make to the broker for the Pods of one namespace")
}

// nodeCredentialsOptions are the broker's settings, nil without
// --node-credentials.
func (o *managerOptions) nodeCredentialsOptions() (*nodecreds.Options, error) {
	if !o.nodeCredentials {
		return nil, nil
	}
	if !o.webhook {
		return nil, usageErrorf("--node-credentials needs the webhook's server: drop --webhook=false")
	}
	if o.nodeCredentialsCache <= 0 {
		return nil, usageErrorf("--node-credentials-cache-duration must be positive")
	}
	opts := &nodecreds.Options{Audience: o.nodeCredentialsAudience, CacheDuration: o.nodeCredentialsCache,
		NodeQPS: o.nodeCredentialsQPS, NodeBurst: o.nodeCredentialsBurst}
	if o.nodeCredentialsQPS == 0 {
		return nil, usageErrorf("--node-credentials-node-qps must be positive")
	}
	if err := opts.Validate(); err != nil {
		return nil, &usageError{err}
	}
	return opts, nil
}

func (o *managerOptions) run(ctx context.Context, logOut io.Writer) error {
	logger, err := newLogger(o.logLevel, o.logFormat, logOut)
	if err != nil {
		return err
	}
	ctrl.SetLogger(logger)
	// A container's memory limit becomes the Go runtime's soft limit, at
	// goMemLimitRatio: near it the collector works harder instead of the
	// kernel killing the manager. GOMEMLIMIT, or AUTOMEMLIMIT (a ratio, or
	// off), decides instead.
	if limit, err := setGoMemLimit(memlimit.FromCgroup); err != nil {
		logger.V(1).Info("no memory limit to follow", "reason", err.Error())
	} else if limit < math.MaxInt64 {
		logger.Info("Go memory limit", "bytes", limit)
	}
	switch o.podInjection {
	case manager.PodInjectionWebhook, manager.PodInjectionPolicy:
	default:
		return usageErrorf("--pod-injection %q: use webhook or policy", o.podInjection)
	}
	if err := o.lease.Validate(); err != nil {
		return usageErrorf("--leader-election-lease-duration, --leader-election-renew-deadline, --leader-election-retry-period: %v", err)
	}
	cfg, err := o.kube.restConfig()
	if err != nil {
		return err
	}
	wh, err := o.webhookOptions()
	if err != nil {
		return err
	}
	regOpts, err := o.reg.options()
	if err != nil {
		return err
	}
	nodeOpts, err := o.nodeCredentialsOptions()
	if err != nil {
		return err
	}
	mgr, err := manager.New(ctx, manager.Options{
		PodInjection:               o.podInjection,
		PodInjectionExclude:        o.podInjectionExclude,
		NodeCredentials:            nodeOpts,
		Webhook:                    wh,
		RestConfig:                 cfg,
		Namespace:                  o.namespace,
		MetricsAddr:                o.metricsAddr,
		ProbeAddr:                  o.probeAddr,
		PprofAddr:                  o.pprofAddr,
		LeaderElect:                o.leaderElect,
		Lease:                      o.lease,
		PluginDir:                  o.pluginDir,
		TenantEndpointHosts:        o.tenantEndpointHosts,
		TenantAllowPrivateNetworks: o.tenantPrivateNets,
		PullFailureMetrics:         o.pullFailureMetrics,
		Registry:                   regOpts,
		QPS:                        o.qps,
		Burst:                      o.burst,
		MaxConcurrentReconciles:    o.maxConcurrentReconciles,
	})
	if err != nil {
		return err
	}
	logger.Info("starting manager", logkeys.Namespace, o.namespace, "leaderElect", o.leaderElect, "qps", o.qps, "burst", o.burst)
	return mgr.Start(ctx)
}

// webhookOptions are the webhook's settings, nil with --webhook=false.
func (o *managerOptions) webhookOptions() (*manager.WebhookOptions, error) {
	if !o.webhook {
		return nil, nil
	}
	switch o.webhookCerts {
	case "self", "external":
	default:
		return nil, usageErrorf("--webhook-certs %q: use self or external", o.webhookCerts)
	}
	if o.webhookTimeoutSeconds == 0 {
		return nil, usageErrorf("--webhook-timeout-seconds must be between 1 and 30")
	}
	wh := &manager.WebhookOptions{
		Host: o.webhookHost, Port: o.webhookPort, ServiceName: o.webhookServiceName, CertDir: o.webhookCertDir,
		ManageCertificates: o.webhookCerts == "self", Register: o.webhookRegister, ConfigurationName: o.webhookConfiguration,
		FailurePolicy: o.webhookFailurePolicy, TimeoutSeconds: o.webhookTimeoutSeconds,
	}
	if err := wh.Validate(); err != nil {
		return nil, &usageError{err}
	}
	return wh, nil
}

// goMemLimitRatio is the share of the container's limit the Go runtime
// aims to stay under. The manager's live heap is mostly its caches (about
// 55 MiB at 10,000 namespaces x 3 credentials); with the collector's
// default pacing the process grew to 4 times that during a fan-out. The
// binary's own pages (about 35 MiB resident) are charged to the container
// too and are not the runtime's to count. At 45% of the chart's 192 MiB
// the runtime keeps under 86 MiB, the process near 120 MiB, and the rest
// is headroom for bursts before the kernel's OOM kill.
const goMemLimitRatio = 0.45

func setGoMemLimit(limit memlimit.Provider) (int64, error) {
	return memlimit.Set(memlimit.WithRatio(goMemLimitRatio), memlimit.WithProvider(limit))
}

func newLogger(level, format string, w io.Writer) (logr.Logger, error) {
	var lvl zapcore.Level
	switch level {
	case "debug":
		lvl = zapcore.Level(-2)
	case "info":
		lvl = zapcore.InfoLevel
	case "error":
		lvl = zapcore.ErrorLevel
	default:
		return logr.Logger{}, usageErrorf("--log-level %q: use debug, info or error", level)
	}
	opts := []zap.Opts{zap.WriteTo(w), zap.Level(lvl), zap.StacktraceLevel(zapcore.PanicLevel)}
	switch format {
	case "json":
		opts = append(opts, zap.JSONEncoder(func(c *zapcore.EncoderConfig) { c.EncodeTime = zapcore.TimeEncoderOfLayout(time.RFC3339) }))
	case "console":
		opts = append(opts, zap.ConsoleEncoder())
	default:
		return logr.Logger{}, usageErrorf("--log-format %q: use json or console", format)
	}
	return zap.New(opts...), nil
}
