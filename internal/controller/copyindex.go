package controller

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"regcred.dev/regcred/internal/credential"
)

// copyIndex holds the managed Secrets of one credential kind by owner, as
// pointers to the cache's own objects, which nobody writes. A credential's
// status counts its copies on every batch of Secret events: listing them
// from the cache copied all of them each time (10,000 Secrets, 10 MiB,
// a thousand times during one fan-out at 10,000 namespaces), and a
// controller-runtime field index kept two index entries per Secret.
//
// The index is fed by the credential controller's own Secret watch, and
// updated before that watch enqueues the credential: a reconcile never
// counts an index older than the event that woke it, and the workers
// start only once the watch has replayed the cache (the handler's
// HasSynced).
//
// Keys are the Secrets' own name strings, and the previous owner comes
// from the event's old object: an entry costs a map slot and no
// allocation of its own (a second map from name to owner, and a
// "namespace/name" string per copy, were 7 MiB at 30,000 copies).
type copyIndex struct {
	kind    credential.Kind
	mu      sync.RWMutex
	byOwner map[credential.Key]map[types.NamespacedName]*corev1.Secret
}

func newCopyIndex(kind credential.Kind) *copyIndex {
	return &copyIndex{kind: kind, byOwner: map[credential.Key]map[types.NamespacedName]*corev1.Secret{}}
}

// each calls f with every cached copy whose owner annotation names key.
// f must not modify the Secret: it is the cache's (an update replaces the
// object, so holding it for a reconcile is safe).
func (ix *copyIndex) each(key credential.Key, f func(*corev1.Secret)) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for _, s := range ix.byOwner[key] {
		f(s)
	}
}

func (ix *copyIndex) ownerOf(s *corev1.Secret) (credential.Key, bool) {
	if s == nil {
		return credential.Key{}, false
	}
	key, owned := credential.OwnerOf(s)
	return key, owned && key.Kind == ix.kind
}

// set records that the Secret was old and is now cur (nil: none, as
// before a create or after a delete) and returns the owners to wake: the
// new one, and the old one if it changed.
func (ix *copyIndex) set(old, cur *corev1.Secret) []credential.Key {
	oldKey, oldOwned := ix.ownerOf(old)
	key, owned := ix.ownerOf(cur)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var wake []credential.Key
	if oldOwned && (!owned || oldKey != key) {
		name := types.NamespacedName{Namespace: old.Namespace, Name: old.Name}
		if m := ix.byOwner[oldKey]; m != nil {
			delete(m, name)
			if len(m) == 0 {
				delete(ix.byOwner, oldKey)
			}
		}
		wake = append(wake, oldKey)
	}
	if owned {
		m := ix.byOwner[key]
		if m == nil {
			m = map[types.NamespacedName]*corev1.Secret{}
			ix.byOwner[key] = m
		}
		m[types.NamespacedName{Namespace: cur.Namespace, Name: cur.Name}] = cur
		wake = append(wake, key)
	}
	return wake
}

// handler records each Secret event in the index, then enqueues the
// owners after statusDelay: the queue keeps one entry per credential
// however many events arrive meanwhile.
func (ix *copyIndex) handler() handler.EventHandler {
	record := func(old, cur client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		o, _ := old.(*corev1.Secret)
		c, _ := cur.(*corev1.Secret)
		for _, key := range ix.set(o, c) {
			q.AddAfter(requestFor(key), statusDelay)
		}
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			record(nil, e.Object, q)
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			record(e.ObjectOld, e.ObjectNew, q)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			record(e.Object, nil, q)
		},
	}
}
