package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
)

// wiring maps events to requests. A mapper cannot return an error: a
// failed read of the cache is logged, and the event's requests are lost
// until the next event or the namespace's own retry.
type wiring struct {
	client           client.Client
	regcredNamespace string
	renders          *renderer
	failures         *failures
}

func namespaceOf(_ context.Context, o client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
}

func (w *wiring) allNamespaces(ctx context.Context, _ client.Object) []reconcile.Request {
	return namespaceRequests(ctx, w.client)
}

// namespaceRequests is a request for every namespace in the cache; a
// failed read is logged and maps to none.
func namespaceRequests(ctx context.Context, c client.Reader) []reconcile.Request {
	var nsList corev1.NamespaceList
	if err := c.List(ctx, &nsList, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "list namespaces to map an event")
		return nil
	}
	out := make([]reconcile.Request, 0, len(nsList.Items))
	for i := range nsList.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: nsList.Items[i].Name}})
	}
	return out
}

// credentials lists the requests of the credentials of one kind that opts
// select.
func (w *wiring) credentials(ctx context.Context, kind credential.Kind, opts ...client.ListOption) []reconcile.Request {
	var out []reconcile.Request
	switch kind {
	case credential.KindCluster:
		var list v1alpha1.ClusterRegistryCredentialList
		if err := w.client.List(ctx, &list, opts...); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "list ClusterRegistryCredentials to map an event")
			return nil
		}
		for _, c := range list.Items {
			out = append(out, requestFor(credential.Key{Kind: kind, Name: c.Name}))
		}
	case credential.KindNamespaced:
		var list v1alpha1.RegistryCredentialList
		if err := w.client.List(ctx, &list, opts...); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "list RegistryCredentials to map an event")
			return nil
		}
		for _, c := range list.Items {
			out = append(out, requestFor(credential.Key{Kind: kind, Namespace: c.Namespace, Name: c.Name}))
		}
	}
	return out
}

// credentialsSelecting maps a namespace change to the credentials that
// may act in it.
func (w *wiring) credentialsSelecting(kind credential.Kind) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		if kind == credential.KindCluster {
			return w.credentials(ctx, kind)
		}
		return w.credentials(ctx, kind, client.InNamespace(o.GetName()))
	}
}

// credentialsOfSourceSecret maps a change of a possible source Secret to
// the credentials reading it, after forgetting what was rendered from it.
func (w *wiring) credentialsOfSourceSecret(kind credential.Kind) handler.TypedMapFunc[*metav1.PartialObjectMetadata, reconcile.Request] {
	return func(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
		w.renders.invalidateSecret(o.Namespace, o.Name)
		bySource := client.MatchingFields{indexSourceSecret: o.Namespace + "/" + o.Name}
		if kind == credential.KindCluster {
			return w.credentials(ctx, kind, bySource)
		}
		return w.credentials(ctx, kind, client.InNamespace(o.Namespace), bySource)
	}
}

// namespacesOfSourceSecret maps a source change to the namespaces holding
// copies of the credentials reading it. A registry Secret regcred does not
// manage may also be what blocks a sync in its namespace (it holds the
// managed Secret's name): a change to it retries that namespace at once
// rather than after conflictRetry.
func (w *wiring) namespacesOfSourceSecret(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
	w.renders.invalidateSecret(o.Namespace, o.Name)
	w.forgetTokens(ctx, o)
	bySource := client.MatchingFields{indexSourceSecret: o.Namespace + "/" + o.Name}
	if len(w.credentials(ctx, credential.KindCluster, bySource)) > 0 {
		return w.allNamespaces(ctx, o)
	}
	if len(w.credentials(ctx, credential.KindNamespaced, client.InNamespace(o.Namespace), bySource)) > 0 || w.failures.inNamespace(o.Namespace) {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.Namespace}}}
	}
	return nil
}

// forgetTokens drops the tokens got with the keys in a Secret that
// changed (rotated, created after the credential, deleted), so the next
// read asks with the keys as they are now. It runs once per event, from
// the namespace controller's mapper: each forget costs a token request,
// and the new token's arrival enqueues the credentials itself.
func (w *wiring) forgetTokens(ctx context.Context, o *metav1.PartialObjectMetadata) {
	if w.renders.tokens == nil {
		return
	}
	bySource := client.MatchingFields{indexSourceSecret: o.Namespace + "/" + o.Name}
	var cluster v1alpha1.ClusterRegistryCredentialList
	var namespaced v1alpha1.RegistryCredentialList
	if err := w.client.List(ctx, &cluster, bySource); err != nil {
		return
	}
	if err := w.client.List(ctx, &namespaced, client.InNamespace(o.Namespace), bySource); err != nil {
		return
	}
	for i := range cluster.Items {
		if k := w.renders.tokenKey(credential.FromCluster(&cluster.Items[i])); k != "" {
			w.renders.tokens.Forget(k)
		}
	}
	for i := range namespaced.Items {
		if k := w.renders.tokenKey(credential.FromNamespaced(&namespaced.Items[i])); k != "" {
			w.renders.tokens.Forget(k)
		}
	}
}
