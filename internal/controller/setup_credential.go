package controller

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
)

// setupClusterRegistryCredentialController registers the controller of
// ClusterRegistryCredentials.
func setupClusterRegistryCredentialController(mgr ctrl.Manager, d *shared) error {
	return setupCredentialController(mgr, d, credential.KindCluster, &v1alpha1.ClusterRegistryCredential{}, "clusterregistrycredential")
}

// setupRegistryCredentialController registers the controller of
// RegistryCredentials.
func setupRegistryCredentialController(mgr ctrl.Manager, d *shared) error {
	return setupCredentialController(mgr, d, credential.KindNamespaced, &v1alpha1.RegistryCredential{}, "registrycredential")
}

// setupCredentialController registers the controller of one credential
// kind: a credential is reconciled when it changes, and, after statusDelay,
// when its copies or the namespaces it may select change; also when its
// sync failures, its source Secret or its token change.
func setupCredentialController(mgr ctrl.Manager, d *shared, kind credential.Kind, forObj client.Object, name string) error {
	copies := newCopyIndex(kind)
	cr := &CredentialReconciler{kind: kind, client: mgr.GetClient(), regcredNamespace: d.opts.Namespace, copies: copies,
		renders: d.renders, failures: d.failures, recorder: d.recorder, podPolicies: d.opts.PodInjectionPolicies,
		verifier: &verifier{options: d.opts.Registry, now: time.Now, tenantGuard: d.guard}}
	cr.verifier.record = cr.recordProbe
	b := ctrl.NewControllerManagedBy(mgr).
		Named(name).
		For(forObj, builder.WithPredicates(specOrLifecycleChanged())).
		// No predicate here: the index takes an entry's old owner from
		// each event's old object, so it must see every event.
		Watches(&corev1.Secret{}, copies.handler()).
		Watches(&corev1.Namespace{}, delayed(d.wiring.credentialsSelecting(kind)), builder.WithPredicates(namespaceChanged())).
		WatchesRawSource(d.failures.source(kind)).
		WatchesRawSource(d.tokenEvents.credentialSource(kind)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2, RateLimiter: RateLimiter()})
	if p := d.opts.PodInjectionPolicies; p != nil {
		b = b.WatchesRawSource(p.wakeups.source(kind))
	}
	for _, src := range d.sourceWatches.sources(d.wiring.credentialsOfSourceSecret(kind)) {
		b = b.WatchesRawSource(src)
	}
	return b.Complete(cr)
}
