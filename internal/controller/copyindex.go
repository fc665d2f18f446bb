package controller

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/workqueue"
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
type copyIndex struct {
	kind    credential.Kind
	mu      sync.RWMutex
	byOwner map[credential.Key]map[string]*corev1.Secret // "namespace/name" -> Secret
	owner   map[string]credential.Key                    // "namespace/name" -> its owner
}

func newCopyIndex(kind credential.Kind) *copyIndex {
	return &copyIndex{kind: kind, byOwner: map[credential.Key]map[string]*corev1.Secret{}, owner: map[string]credential.Key{}}
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

// set records s (nil: the Secret at name is gone) and returns the owners
// to wake: the new one, and the old one if it changed.
func (ix *copyIndex) set(name string, s *corev1.Secret) []credential.Key {
	var key credential.Key
	owned := false
	if s != nil {
		key, owned = credential.OwnerOf(s)
		owned = owned && key.Kind == ix.kind
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var wake []credential.Key
	if old, ok := ix.owner[name]; ok && (!owned || old != key) {
		m := ix.byOwner[old]
		delete(m, name)
		if len(m) == 0 {
			delete(ix.byOwner, old)
		}
		delete(ix.owner, name)
		wake = append(wake, old)
	}
	if owned {
		m := ix.byOwner[key]
		if m == nil {
			m = map[string]*corev1.Secret{}
			ix.byOwner[key] = m
		}
		m[name] = s
		ix.owner[name] = key
		wake = append(wake, key)
	}
	return wake
}

// handler records each Secret event in the index, then enqueues the
// owners after statusDelay: the queue keeps one entry per credential
// however many events arrive meanwhile.
func (ix *copyIndex) handler() handler.EventHandler {
	record := func(name string, s *corev1.Secret, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		for _, key := range ix.set(name, s) {
			q.AddAfter(requestFor(key), statusDelay)
		}
	}
	secret := func(o any) (*corev1.Secret, string, bool) {
		s, ok := o.(*corev1.Secret)
		if !ok {
			return nil, "", false
		}
		return s, s.Namespace + "/" + s.Name, true
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if s, name, ok := secret(e.Object); ok {
				record(name, s, q)
			}
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if s, name, ok := secret(e.ObjectNew); ok {
				record(name, s, q)
			}
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if _, name, ok := secret(e.Object); ok {
				record(name, nil, q)
			}
		},
	}
}
