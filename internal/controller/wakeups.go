package controller

import (
	"context"
	"sync"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"regcred.dev/regcred/internal/credential"
)

// wakeups enqueues credentials in the credential controller of their kind
// when something outside their objects changes what their status says
// (a failure in a namespace, the admission policies' bound).
//
// Each kind has its own credential controller, started in no fixed order,
// so the wake-up function and the keys woken before it is registered are
// kept per kind: one controller's start never replaces the other's
// function nor takes its pending keys.
type wakeups struct {
	mu      sync.Mutex
	notify  map[credential.Kind]func(credential.Key)
	pending map[credential.Kind]map[credential.Key]struct{}
}

func newWakeups() *wakeups {
	return &wakeups{notify: map[credential.Kind]func(credential.Key){}, pending: map[credential.Kind]map[credential.Key]struct{}{}}
}

// wake enqueues key, or keeps it until its kind's controller starts.
func (w *wakeups) wake(key credential.Key) {
	w.mu.Lock()
	notify := w.notify[key.Kind]
	if notify == nil {
		if w.pending[key.Kind] == nil {
			w.pending[key.Kind] = map[credential.Key]struct{}{}
		}
		w.pending[key.Kind][key] = struct{}{}
	}
	w.mu.Unlock()
	if notify != nil {
		notify(key)
	}
}

// source is the controller-runtime source of kind's controller.
func (w *wakeups) source(kind credential.Kind) *wakeupSource {
	return &wakeupSource{w: w, kind: kind}
}

type wakeupSource struct {
	w    *wakeups
	kind credential.Kind
}

func (s *wakeupSource) Start(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	add := func(key credential.Key) { q.Add(requestFor(key)) }
	s.w.mu.Lock()
	s.w.notify[s.kind] = add
	pending := s.w.pending[s.kind]
	delete(s.w.pending, s.kind)
	s.w.mu.Unlock()
	for k := range pending {
		add(k)
	}
	return nil
}
