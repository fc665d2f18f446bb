package controller

import (
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
)

// setupNamespaceController registers the namespace controller: a namespace
// is reconciled when it, its ServiceAccounts or managed Secrets change, when
// a credential that may apply to it changes, when a source Secret changes,
// and when a token its copies carry is refreshed.
func setupNamespaceController(mgr ctrl.Manager, d *shared) (*NamespaceReconciler, error) {
	nsr := &NamespaceReconciler{client: mgr.GetClient(), apiReader: mgr.GetAPIReader(), regcredNamespace: d.opts.Namespace,
		catalogue: d.catalogue, renders: d.renders, failures: d.failures, recorder: d.recorder}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("namespace").
		For(&corev1.Namespace{}, builder.WithPredicates(namespaceChanged())).
		Watches(&corev1.ServiceAccount{}, handler.EnqueueRequestsFromMapFunc(namespaceOf), builder.WithPredicates(serviceAccountChanged())).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(namespaceOf)).
		WatchesRawSource(newCatalogueSource(d.catalogue, mgr.GetClient())).
		WithOptions(controller.Options{MaxConcurrentReconciles: d.opts.MaxConcurrentReconciles, RateLimiter: RateLimiter()})
	for _, src := range d.sourceWatches.sources(d.wiring.namespacesOfSourceSecret) {
		b = b.WatchesRawSource(src)
	}
	b = b.WatchesRawSource(d.tokenEvents.namespaceSource())
	return nsr, b.Complete(nsr)
}
