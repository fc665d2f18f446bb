// Package cachefeed keeps a credential.Catalogue equal to the manager's
// informer caches: every add, update and delete of a
// ClusterRegistryCredential, RegistryCredential or ClusterImageMirror is
// put into the catalogue by one event handler per kind, so the
// catalogue's listeners hear of a change only after it holds it. It is
// the catalogue's only link to a Kubernetes client.
package cachefeed

import (
	"context"
	"fmt"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
)

// Start registers the handlers with c's informers and marks cat synced,
// in the background, once each has delivered what existed when the
// informers started. Call it before the cache starts or after; the
// handlers stop with ctx.
func Start(ctx context.Context, c cache.Cache, cat *credential.Catalogue) error {
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    cat.Put,
		UpdateFunc: func(_, obj any) { cat.Put(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			cat.Delete(obj)
		},
	}
	var synced []toolscache.InformerSynced
	for _, obj := range []client.Object{&v1alpha1.ClusterRegistryCredential{}, &v1alpha1.RegistryCredential{}, &v1alpha1.ClusterImageMirror{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watch %T for the catalogue: %w", obj, err)
		}
		reg, err := inf.AddEventHandler(handler)
		if err != nil {
			return fmt.Errorf("watch %T for the catalogue: %w", obj, err)
		}
		synced = append(synced, reg.HasSynced)
	}
	go func() {
		if toolscache.WaitForCacheSync(ctx.Done(), synced...) {
			cat.MarkSynced()
		}
	}()
	return nil
}
