package controller

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"regcred.dev/regcred/internal/credential"
)

// catalogueSource enqueues the namespaces a credential change reaches —
// every namespace for a ClusterRegistryCredential, its own for a
// RegistryCredential — when the catalogue has compiled the change. A
// watch on the credentials' informer directly could run the namespace
// reconciler before the catalogue's own handler, on the old view, with
// no later event to correct it.
type catalogueSource struct {
	catalogue *credential.Catalogue
	reader    client.Reader

	mu  sync.Mutex
	ctx context.Context
	q   queue
}

// newCatalogueSource listens to cat at once: changes before the
// controller starts need no event, as it reconciles every namespace when
// it does.
func newCatalogueSource(cat *credential.Catalogue, reader client.Reader) *catalogueSource {
	s := &catalogueSource{catalogue: cat, reader: reader}
	cat.OnChange(s.changed)
	return s
}

func (s *catalogueSource) Start(ctx context.Context, q queue) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctx, s.q = ctx, q
	return nil
}

// WaitForSync holds the controller's workers until the catalogue holds
// every credential that existed at the start: a namespace reconciled on
// half a catalogue would skip the rest's Secrets.
func (s *catalogueSource) WaitForSync(ctx context.Context) error {
	select {
	case <-s.catalogue.Synced():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *catalogueSource) changed(k credential.Key) {
	s.mu.Lock()
	ctx, q := s.ctx, s.q
	s.mu.Unlock()
	if q == nil {
		return
	}
	if k.Kind == credential.KindNamespaced {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: k.Namespace}})
		return
	}
	for _, req := range namespaceRequests(ctx, s.reader) {
		q.Add(req)
	}
}
