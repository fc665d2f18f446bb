package controller

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/credential/cachefeed"
	"regcred.dev/regcred/internal/egress"
	"regcred.dev/regcred/internal/registry"
	"regcred.dev/regcred/internal/source/cloudsrc"
)

// The verbs are the calls the code makes, no more (docs/security.md argues
// each; internal/release's TestChartRBACIsNeeded holds the chart to them):
// credentials and ServiceAccounts are only patched, managed Secrets
// created, updated and deleted, never patched.
// +kubebuilder:rbac:groups=regcred.dev,resources=clusterregistrycredentials;registrycredentials,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=regcred.dev,resources=clusterregistrycredentials/status;registrycredentials/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// Leader election (controller-runtime's Lease lock: get, create, update)
// of the Lease regcred-manager (internal/manager's LeaderElectionID), in
// regcred's namespace only; the chart binds it there.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=regcred-system,resources=leases,verbs=create
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=regcred-system,resources=leases,resourceNames=regcred-manager,verbs=get;update
// +kubebuilder:rbac:groups="",namespace=regcred-system,resources=events,verbs=create;patch
//
// Web identities (cloudsrc's mint: serviceaccounts/token create and
// tokenreviews create) have no marker: the chart grants them only with
// webIdentity.enabled (templates/rbac.yaml); without them a web identity
// reports AccessDenied.
//
// Node credentials (tokenreviews create, pods get, and the ConfigMap
// regcred-node-credentials in regcred's namespace) have no marker either:
// the chart grants them only with nodeCredentials.enabled. The broker
// reads Pods and that ConfigMap with the API reader, never the cache.

// Options configure the controllers.
type Options struct {
	// Namespace is regcred's own namespace: where ClusterRegistryCredential
	// sources live, and never synced to.
	Namespace string
	// MaxConcurrentReconciles of the namespace controller.
	MaxConcurrentReconciles int
	// Cloud is how cloud sources reach their clouds (an HTTP client, a
	// clock); the zero value uses the system's roots.
	Cloud cloud.Env
	// Tokens tunes the token cache of cloud sources.
	Tokens cloud.CacheOptions
	// PluginDir is where credential provider plugins may run from; empty
	// turns plugin sources off.
	PluginDir string
	// TenantEndpointHosts are the hosts RegistryCredentials' endpoint
	// overrides may name; empty refuses every override.
	TenantEndpointHosts []string
	// Registry configures spec.verify probes (CAs to trust, a transport).
	Registry []registry.Option
	// Catalogue is the compiled credentials the namespace controller and
	// the webhook share; nil makes one, fed from the manager's cache.
	Catalogue *credential.Catalogue
	// TenantAllowPrivateNetworks are CIDRs (or addresses) in loopback,
	// link-local or private ranges that RegistryCredentials' spec.verify
	// probes and cloud endpoints may still reach; the rest of those
	// ranges is refused for tenants.
	TenantAllowPrivateNetworks []string
	// PodInjectionPolicies, when Pods are injected by admission policies
	// (regcred manager --pod-injection=policy), is their rendering: each
	// credential's PodInjection condition says whether they carry it.
	PodInjectionPolicies *PolicyRender
}

// CacheOptions restricts the manager's cache to what regcred manages:
// Secrets only with regcred's label, and no managedFields on anything.
// The kinds tenants write keep only what regcred reads (cachetrim.go),
// and are listed in trimmed pages (pagedlist.go).
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{credential.LabelManaged: "true"}),
				Transform: tenantTrim(&corev1.Secret{})},
			&corev1.ServiceAccount{}:       {Transform: tenantTrim(&corev1.ServiceAccount{})},
			&corev1.Namespace{}:            {Transform: tenantTrim(&corev1.Namespace{})},
			&v1alpha1.RegistryCredential{}: {Transform: tenantTrim(&v1alpha1.RegistryCredential{})},
		},
		NewInformer: pagedInformers(tenantTrim),
	}
}

// tenantEnv is env for RegistryCredentials' cloud sources: the same
// client settings, with connections to private addresses refused unless
// guard allows them.
func tenantEnv(env cloud.Env, guard *egress.Guard) cloud.Env {
	var (
		base    http.RoundTripper
		timeout time.Duration
	)
	if env.HTTPClient != nil {
		base, timeout = env.HTTPClient.Transport, env.HTTPClient.Timeout
	}
	env.HTTPClient = egress.Client(base, egress.Policy{Guard: guard}, timeout)
	return env
}

// RateLimiter backs off per item, from 50ms to 5 minutes.
func RateLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](50*time.Millisecond, 5*time.Minute)
}

// Setup registers the indexes, caches and controllers with mgr, and returns
// the namespace reconciler, whose EnsureSecret the admission webhook uses
// to make sure a Secret exists.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) (*NamespaceReconciler, error) {
	if opts.Namespace == "" {
		return nil, fmt.Errorf("the regcred namespace must be set")
	}
	if opts.MaxConcurrentReconciles <= 0 {
		opts.MaxConcurrentReconciles = 4
	}
	d, err := newShared(ctx, mgr, opts)
	if err != nil {
		return nil, err
	}
	nsr, err := setupNamespaceController(mgr, d)
	if err != nil {
		return nil, err
	}
	if err := setupClusterRegistryCredentialController(mgr, d); err != nil {
		return nil, err
	}
	if err := setupRegistryCredentialController(mgr, d); err != nil {
		return nil, err
	}
	return nsr, nil
}

// shared are the dependencies the controllers share, built once: one
// renderer and token cache, so a source is read once for all of them, and
// one record of sync failures, which the namespace controller writes and
// the credential controllers report.
type shared struct {
	opts  Options
	guard *egress.Guard
	// catalogue is the compiled credentials, fed from the cache.
	catalogue *credential.Catalogue
	renders   *renderer
	failures  *failures
	recorder  events.EventRecorder
	// tokenEvents wakes the users of a refreshed token.
	tokenEvents *tokenEvents
	// sourceWatches watch source Secrets, which no cache holds in full.
	sourceWatches *sourceWatches
	wiring        *wiring
}

func newShared(ctx context.Context, mgr ctrl.Manager, opts Options) (*shared, error) {
	guard, err := egress.NewGuard(opts.TenantAllowPrivateNetworks)
	if err != nil {
		return nil, err
	}
	te := newTokenEvents(mgr.GetClient())
	tokens, err := newTokenCache(mgr, opts.Tokens, te)
	if err != nil {
		return nil, err
	}
	tenantCloud := tenantEnv(opts.Cloud, guard)
	clouds := &cloudsrc.Builder{Reader: mgr.GetAPIReader(), Client: mgr.GetClient(), Env: opts.Cloud, TenantEnv: &tenantCloud, PluginDir: opts.PluginDir,
		TenantEndpointHosts: opts.TenantEndpointHosts}
	renders := newRenderer(mgr.GetAPIReader(), opts.Namespace, clouds, tokens)
	if err := setupIndexes(ctx, mgr.GetFieldIndexer(), opts.Namespace, renders); err != nil {
		return nil, err
	}
	watches, err := newSourceWatches(mgr, opts.Namespace)
	if err != nil {
		return nil, err
	}
	fails := newFailures()
	cat := opts.Catalogue
	if cat == nil {
		cat = credential.NewCatalogue(opts.Namespace)
		if err := cachefeed.Start(ctx, mgr.GetCache(), cat); err != nil {
			return nil, err
		}
	}
	return &shared{opts: opts, guard: guard, catalogue: cat, renders: renders, failures: fails, recorder: mgr.GetEventRecorder("regcred"),
		tokenEvents: te, sourceWatches: watches,
		wiring: &wiring{client: mgr.GetClient(), regcredNamespace: opts.Namespace, renders: renders, failures: fails}}, nil
}

// newTokenCache is the cache of cloud sources' short-lived tokens, closed
// with the manager; te wakes a token's users on the leader.
func newTokenCache(mgr ctrl.Manager, opts cloud.CacheOptions, te *tokenEvents) (*cloud.Cache, error) {
	opts.OnChange, opts.InUse, opts.Observer = te.changed, te.inUse, tokenMetrics{}
	tokens := cloud.NewCache(opts)
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		tokens.Close()
		return nil
	})); err != nil {
		return nil, err
	}
	if err := mgr.Add(leader{te}); err != nil {
		return nil, err
	}
	return tokens, nil
}

// setupIndexes indexes credentials by source Secret and by token key, for
// the mappers. (Managed Secrets by owner: copyIndex.)
func setupIndexes(ctx context.Context, idx client.FieldIndexer, regcredNamespace string, renders *renderer) error {
	if err := idx.IndexField(ctx, &v1alpha1.ClusterRegistryCredential{}, indexSourceSecret, func(o client.Object) []string {
		return sourceSecrets(&o.(*v1alpha1.ClusterRegistryCredential).Spec.Source, regcredNamespace)
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &v1alpha1.RegistryCredential{}, indexSourceSecret, func(o client.Object) []string {
		c := o.(*v1alpha1.RegistryCredential)
		return sourceSecrets(&c.Spec.Source, c.Namespace)
	}); err != nil {
		return err
	}
	for _, obj := range []client.Object{&v1alpha1.ClusterRegistryCredential{}, &v1alpha1.RegistryCredential{}} {
		if err := idx.IndexField(ctx, obj, indexTokenKey, func(o client.Object) []string {
			c, err := credential.From(o)
			if err != nil {
				return nil
			}
			if k := renders.tokenKey(c); k != "" {
				return []string{k}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// sourceSecrets are "namespace/name" of the Secrets a source reads: the
// registry Secret, or a cloud identity's keys.
func sourceSecrets(src *v1alpha1.CredentialSource, namespace string) []string {
	if src.SecretRef != nil {
		return []string{namespace + "/" + src.SecretRef.Name}
	}
	if id := src.CloudIdentity(); id != nil && id.SecretRef != nil {
		return []string{namespace + "/" + id.SecretRef.Name}
	}
	return nil
}

// statusDelay batches the status updates of a credential while its copies
// are being written: a thousand Secret events within it make one status
// write, not a thousand.
const statusDelay = 500 * time.Millisecond

// delayed enqueues the mapped requests after statusDelay; the queue keeps
// one entry per request however many events arrive meanwhile.
func delayed(mapFn handler.MapFunc) handler.EventHandler {
	add := func(ctx context.Context, o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		for _, req := range mapFn(ctx, o) {
			q.AddAfter(req, statusDelay)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.ObjectNew, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
		GenericFunc: func(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
	}
}
