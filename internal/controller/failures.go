package controller

import (
	"context"
	"sort"
	"sync"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"regcred.dev/regcred/internal/credential"
)

// failures remembers, per credential, the namespaces where the namespace
// controller could not sync, and wakes the credential controller of that
// credential's kind when that changes. It lives in memory: after a restart
// every namespace is reconciled again and refills it.
//
// Each kind has its own credential controller, started in no fixed order,
// so the wake-up function and the changes that arrive before it is
// registered are kept per kind: one controller's start never replaces the
// other's function nor takes its pending keys.
type failures struct {
	mu      sync.Mutex
	byCred  map[credential.Key]map[string]string // namespace -> message
	notify  map[credential.Kind]func(credential.Key)
	pending map[credential.Kind]map[credential.Key]struct{}
}

func newFailures() *failures {
	return &failures{byCred: map[credential.Key]map[string]string{}, notify: map[credential.Kind]func(credential.Key){},
		pending: map[credential.Kind]map[credential.Key]struct{}{}}
}

// set records (message != "") or clears (message == "") a failure. It
// reports whether this is a new or changed failure.
func (f *failures) set(key credential.Key, namespace, message string) bool {
	f.mu.Lock()
	m := f.byCred[key]
	old, had := m[namespace]
	changed := false
	switch {
	case message == "" && had:
		delete(m, namespace)
		if len(m) == 0 {
			delete(f.byCred, key)
		}
		changed = true
	case message != "" && old != message:
		if m == nil {
			m = map[string]string{}
			f.byCred[key] = m
		}
		m[namespace] = message
		changed = true
	}
	notify := f.notify[key.Kind]
	if changed && notify == nil {
		if f.pending[key.Kind] == nil {
			f.pending[key.Kind] = map[credential.Key]struct{}{}
		}
		f.pending[key.Kind][key] = struct{}{}
	}
	f.mu.Unlock()
	if changed && notify != nil {
		notify(key)
	}
	return changed && message != ""
}

// clearNamespace forgets every failure in namespace (it was deleted).
func (f *failures) clearNamespace(namespace string) {
	f.mu.Lock()
	var keys []credential.Key
	for key, m := range f.byCred {
		if _, ok := m[namespace]; ok {
			keys = append(keys, key)
		}
	}
	f.mu.Unlock()
	for _, k := range keys {
		f.set(k, namespace, "")
	}
}

// inNamespace reports whether any credential failed in namespace.
func (f *failures) inNamespace(namespace string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.byCred {
		if _, ok := m[namespace]; ok {
			return true
		}
	}
	return false
}

// forget drops a credential.
func (f *failures) forget(key credential.Key) {
	f.mu.Lock()
	delete(f.byCred, key)
	f.mu.Unlock()
}

// get returns the failures of a credential in the given namespaces, sorted
// by namespace.
func (f *failures) get(key credential.Key, inScope func(string) bool) []failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []failure
	for ns, msg := range f.byCred[key] {
		if inScope(ns) {
			out = append(out, failure{ns, msg})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace < out[j].Namespace })
	return out
}

type failure struct{ Namespace, Message string }

// notifySource is a controller-runtime source that enqueues the credentials
// of one kind whose failures changed.
type notifySource struct {
	f    *failures
	kind credential.Kind
}

func (s *notifySource) Start(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	add := func(key credential.Key) { q.Add(requestFor(key)) }
	s.f.mu.Lock()
	s.f.notify[s.kind] = add
	pending := s.f.pending[s.kind]
	delete(s.f.pending, s.kind)
	s.f.mu.Unlock()
	for k := range pending {
		add(k)
	}
	return nil
}
