package controller

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/dockercfg"
)

// sourceWatches watch the metadata of Secrets that could be a source:
// one cache per source Secret type, selected on the server by field
// "type", leaving out regcred's own copies. Secrets of other types (the
// Opaque, TLS, token and Helm release Secrets that make up most of a
// cluster) are never sent to regcred at all, except the Opaque Secrets of
// regcred's own namespace, and those that are keep only their name,
// namespace and resourceVersion in memory.
type sourceWatches struct {
	caches []cache.Cache
}

func newSourceWatches(mgr ctrl.Manager, regcredNamespace string) (*sourceWatches, error) {
	notManaged, err := labels.NewRequirement(credential.LabelManaged, selection.DoesNotExist, nil)
	if err != nil {
		return nil, err
	}
	sw := &sourceWatches{}
	add := func(secretType string, namespaces map[string]cache.Config) error {
		c, err := cache.New(mgr.GetConfig(), cache.Options{
			Scheme:               mgr.GetScheme(),
			Mapper:               mgr.GetRESTMapper(),
			DefaultNamespaces:    namespaces,
			DefaultLabelSelector: labels.NewSelector().Add(*notManaged),
			DefaultFieldSelector: fields.OneTermEqualSelector("type", secretType),
			DefaultTransform:     stripToIdentity,
			// Tenants write these Secrets' metadata (256 KiB of annotations each).
			NewInformer: pagedInformers(func(runtime.Object) toolscache.TransformFunc { return stripToIdentity }),
		})
		if err != nil {
			return err
		}
		if err := mgr.Add(c); err != nil {
			return err
		}
		sw.caches = append(sw.caches, c)
		return nil
	}
	for _, t := range []string{dockercfg.SecretTypeDockerConfigJSON, dockercfg.SecretTypeDockercfg, dockercfg.SecretTypeBasicAuth} {
		if err := add(t, nil); err != nil {
			return nil, err
		}
	}
	// Opaque Secrets hold the keys of cloud identities. Only regcred's own
	// namespace is watched (ClusterRegistryCredentials' keys): Opaque
	// Secrets are most of a cluster's. A tenant's keys Secret is read at
	// each token request instead, so a rotated key is used from the next
	// refresh on, and a missing one is retried with backoff.
	if err := add(string(corev1.SecretTypeOpaque), map[string]cache.Config{regcredNamespace: {}}); err != nil {
		return nil, err
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
