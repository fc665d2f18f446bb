package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/dockercfg"
)

// +kubebuilder:rbac:groups=regcred.dev,resources=clusterregistrycredentials;registrycredentials,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=regcred.dev,resources=clusterregistrycredentials/status;registrycredentials/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=regcred.dev,resources=clusterregistrycredentials/finalizers;registrycredentials/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// Options configure the controllers.
type Options struct {
	// Namespace is regcred's own namespace: where ClusterRegistryCredential
	// sources live, and never synced to.
	Namespace string
	// MaxConcurrentReconciles of the namespace controller.
	MaxConcurrentReconciles int
}

// CacheOptions restricts the manager's cache to what regcred manages:
// Secrets only with regcred's label, and no managedFields on anything.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{credential.LabelManaged: "true"})},
		},
	}
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
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &corev1.Secret{}, indexOwner, func(o client.Object) []string {
		if k := ownerKey(o.(*corev1.Secret)); k != "" {
			return []string{k}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := idx.IndexField(ctx, &v1alpha1.ClusterRegistryCredential{}, indexSourceSecret, func(o client.Object) []string {
		if ref := o.(*v1alpha1.ClusterRegistryCredential).Spec.Source.SecretRef; ref != nil {
			return []string{opts.Namespace + "/" + ref.Name}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := idx.IndexField(ctx, &v1alpha1.RegistryCredential{}, indexSourceSecret, func(o client.Object) []string {
		c := o.(*v1alpha1.RegistryCredential)
		if ref := c.Spec.Source.SecretRef; ref != nil {
			return []string{c.Namespace + "/" + ref.Name}
		}
		return nil
	}); err != nil {
		return nil, err
	}

	srcs := newSources(mgr.GetAPIReader(), opts.Namespace)
	fails := newFailures()
	recorder := mgr.GetEventRecorder("regcred")
	watches, err := newSourceWatches(mgr)
	if err != nil {
		return nil, err
	}
	w := &wiring{client: mgr.GetClient(), regcredNamespace: opts.Namespace, sources: srcs, failures: fails}

	nsr := &NamespaceReconciler{client: mgr.GetClient(), apiReader: mgr.GetAPIReader(), regcredNamespace: opts.Namespace,
		sources: srcs, failures: fails, recorder: recorder}
	nsBuilder := ctrl.NewControllerManagedBy(mgr).
		Named("namespace").
		For(&corev1.Namespace{}, builder.WithPredicates(namespaceChanged())).
		Watches(&corev1.ServiceAccount{}, handler.EnqueueRequestsFromMapFunc(namespaceOf), builder.WithPredicates(serviceAccountChanged())).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(namespaceOf)).
		Watches(&v1alpha1.ClusterRegistryCredential{}, handler.EnqueueRequestsFromMapFunc(w.allNamespaces), builder.WithPredicates(specOrLifecycleChanged())).
		Watches(&v1alpha1.RegistryCredential{}, handler.EnqueueRequestsFromMapFunc(namespaceOf), builder.WithPredicates(specOrLifecycleChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles, RateLimiter: RateLimiter()})
	for _, src := range watches.sources(w.namespacesOfSourceSecret) {
		nsBuilder = nsBuilder.WatchesRawSource(src)
	}
	if err := nsBuilder.Complete(nsr); err != nil {
		return nil, err
	}

	for _, kind := range []credential.Kind{credential.KindCluster, credential.KindNamespaced} {
		cr := &CredentialReconciler{kind: kind, client: mgr.GetClient(), regcredNamespace: opts.Namespace,
			sources: srcs, failures: fails, recorder: recorder}
		var forObj client.Object = &v1alpha1.ClusterRegistryCredential{}
		name := "clusterregistrycredential"
		if kind == credential.KindNamespaced {
			forObj, name = &v1alpha1.RegistryCredential{}, "registrycredential"
		}
		b := ctrl.NewControllerManagedBy(mgr).
			Named(name).
			For(forObj, builder.WithPredicates(specOrLifecycleChanged())).
			Watches(&corev1.Secret{}, delayed(w.ownerOf(kind))).
			Watches(&corev1.Namespace{}, delayed(w.credentialsSelecting(kind)), builder.WithPredicates(namespaceChanged())).
			WatchesRawSource(&notifySource{f: fails, kind: kind}).
			WithOptions(controller.Options{MaxConcurrentReconciles: 2, RateLimiter: RateLimiter()})
		for _, src := range watches.sources(w.credentialsOfSourceSecret(kind)) {
			b = b.WatchesRawSource(src)
		}
		if err := b.Complete(cr); err != nil {
			return nil, err
		}
	}
	return nsr, nil
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

// wiring maps events to requests.
type wiring struct {
	client           client.Client
	regcredNamespace string
	sources          *sources
	failures         *failures
}

func namespaceOf(_ context.Context, o client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
}

func (w *wiring) allNamespaces(ctx context.Context, _ client.Object) []reconcile.Request {
	var nsList corev1.NamespaceList
	if err := w.client.List(ctx, &nsList, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "list namespaces")
		return nil
	}
	out := make([]reconcile.Request, 0, len(nsList.Items))
	for i := range nsList.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: nsList.Items[i].Name}})
	}
	return out
}

func (w *wiring) ownerOf(kind credential.Kind) handler.MapFunc {
	return func(_ context.Context, o client.Object) []reconcile.Request {
		s, ok := o.(*corev1.Secret)
		if !ok {
			return nil
		}
		if key, ok := credential.OwnerOf(s); ok && key.Kind == kind {
			return []reconcile.Request{requestFor(key)}
		}
		return nil
	}
}

func (w *wiring) credentialsSelecting(kind credential.Kind) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var out []reconcile.Request
		if kind == credential.KindCluster {
			var list v1alpha1.ClusterRegistryCredentialList
			if err := w.client.List(ctx, &list); err != nil {
				return nil
			}
			for _, c := range list.Items {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: c.Name}})
			}
			return out
		}
		var list v1alpha1.RegistryCredentialList
		if err := w.client.List(ctx, &list, client.InNamespace(o.GetName())); err != nil {
			return nil
		}
		for _, c := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: c.Namespace, Name: c.Name}})
		}
		return out
	}
}

// credentialsOfSourceSecret maps a change of a possible source Secret to
// the credentials reading it, after forgetting what was rendered from it.
func (w *wiring) credentialsOfSourceSecret(kind credential.Kind) handler.TypedMapFunc[*metav1.PartialObjectMetadata, reconcile.Request] {
	return func(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
		w.sources.invalidateSecret(o.Namespace, o.Name)
		key := o.Namespace + "/" + o.Name
		var out []reconcile.Request
		if kind == credential.KindCluster {
			var list v1alpha1.ClusterRegistryCredentialList
			if err := w.client.List(ctx, &list, client.MatchingFields{indexSourceSecret: key}); err == nil {
				for _, c := range list.Items {
					out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: c.Name}})
				}
			}
			return out
		}
		var list v1alpha1.RegistryCredentialList
		if err := w.client.List(ctx, &list, client.InNamespace(o.Namespace), client.MatchingFields{indexSourceSecret: key}); err == nil {
			for _, c := range list.Items {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: c.Namespace, Name: c.Name}})
			}
		}
		return out
	}
}

// namespacesOfSourceSecret maps a source change to the namespaces holding
// copies of the credentials reading it. A registry Secret regcred does not
// manage may also be what blocks a sync in its namespace (it holds the
// managed Secret's name): a change to it retries that namespace at once
// rather than after conflictRetry.
func (w *wiring) namespacesOfSourceSecret(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
	w.sources.invalidateSecret(o.Namespace, o.Name)
	key := o.Namespace + "/" + o.Name
	var cluster v1alpha1.ClusterRegistryCredentialList
	if err := w.client.List(ctx, &cluster, client.MatchingFields{indexSourceSecret: key}); err == nil && len(cluster.Items) > 0 {
		return w.allNamespaces(ctx, o)
	}
	var namespaced v1alpha1.RegistryCredentialList
	if err := w.client.List(ctx, &namespaced, client.InNamespace(o.Namespace), client.MatchingFields{indexSourceSecret: key}); err == nil && len(namespaced.Items) > 0 ||
		w.failures.inNamespace(o.Namespace) {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.Namespace}}}
	}
	return nil
}

// sourceWatches watch the metadata of Secrets that could be a source:
// one cache per source Secret type, selected on the server by field
// "type", leaving out regcred's own copies. Secrets of other types (the
// Opaque, TLS, token and Helm release Secrets that make up most of a
// cluster) are never sent to regcred at all, and those that are keep only
// their name, namespace and resourceVersion in memory.
type sourceWatches struct {
	caches []cache.Cache
}

func newSourceWatches(mgr ctrl.Manager) (*sourceWatches, error) {
	notManaged, err := labels.NewRequirement(credential.LabelManaged, selection.DoesNotExist, nil)
	if err != nil {
		return nil, err
	}
	sw := &sourceWatches{}
	for _, t := range []string{dockercfg.SecretTypeDockerConfigJSON, dockercfg.SecretTypeDockercfg, dockercfg.SecretTypeBasicAuth} {
		c, err := cache.New(mgr.GetConfig(), cache.Options{
			Scheme:               mgr.GetScheme(),
			Mapper:               mgr.GetRESTMapper(),
			DefaultLabelSelector: labels.NewSelector().Add(*notManaged),
			DefaultFieldSelector: fields.OneTermEqualSelector("type", t),
			DefaultTransform:     stripToIdentity,
		})
		if err != nil {
			return nil, err
		}
		if err := mgr.Add(c); err != nil {
			return nil, err
		}
		sw.caches = append(sw.caches, c)
	}
	return sw, nil
}

func (sw *sourceWatches) sources(mapFn handler.TypedMapFunc[*metav1.PartialObjectMetadata, reconcile.Request]) []source.TypedSource[reconcile.Request] {
	out := make([]source.TypedSource[reconcile.Request], 0, len(sw.caches))
	for _, c := range sw.caches {
		obj := &metav1.PartialObjectMetadata{}
		obj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		out = append(out, source.TypedKind(c, obj, handler.TypedEnqueueRequestsFromMapFunc(mapFn)))
	}
	return out
}

func stripToIdentity(in any) (any, error) {
	if m, ok := in.(*metav1.PartialObjectMetadata); ok {
		m.ObjectMeta = metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
	}
	return in, nil
}

// Predicates.

func namespaceChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*corev1.Namespace), e.ObjectNew.(*corev1.Namespace)
			return !labels.Equals(o.Labels, n.Labels) || o.Status.Phase != n.Status.Phase ||
				o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero()
		},
	}
}

func serviceAccountChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*corev1.ServiceAccount), e.ObjectNew.(*corev1.ServiceAccount)
			if len(o.ImagePullSecrets) != len(n.ImagePullSecrets) || !labels.Equals(o.Labels, n.Labels) ||
				o.Annotations[credential.AnnotationPullSecrets] != n.Annotations[credential.AnnotationPullSecrets] {
				return true
			}
			for i := range o.ImagePullSecrets {
				if o.ImagePullSecrets[i] != n.ImagePullSecrets[i] {
					return true
				}
			}
			return false
		},
		DeleteFunc: func(event.DeleteEvent) bool { return false },
	}
}

// specOrLifecycleChanged ignores the credential controller's own status
// writes.
func specOrLifecycleChanged() predicate.Predicate {
	return predicate.Or(predicate.GenerationChangedPredicate{}, predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero() ||
				len(e.ObjectOld.GetFinalizers()) != len(e.ObjectNew.GetFinalizers())
		},
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	})
}
