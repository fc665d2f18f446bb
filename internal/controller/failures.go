package controller

import (
	"context"
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
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
	byCred  map[string]map[string]string    // credential key -> namespace -> message
	notify  map[string]func(credKey string) // kind -> wake-up
	pending map[string]map[string]struct{}  // kind -> credential keys
}

func newFailures() *failures {
	return &failures{byCred: map[string]map[string]string{}, notify: map[string]func(string){},
		pending: map[string]map[string]struct{}{}}
}

// set records (message != "") or clears (message == "") a failure. It
// reports whether this is a new or changed failure.
func (f *failures) set(credKey, namespace, message string) bool {
	f.mu.Lock()
	m := f.byCred[credKey]
	old, had := m[namespace]
	changed := false
	switch {
	case message == "" && had:
		delete(m, namespace)
		if len(m) == 0 {
			delete(f.byCred, credKey)
		}
		changed = true
	case message != "" && old != message:
		if m == nil {
			m = map[string]string{}
			f.byCred[credKey] = m
		}
		m[namespace] = message
		changed = true
	}
	kind, _, _ := cutKind(credKey)
	notify := f.notify[kind]
	if changed && notify == nil {
		if f.pending[kind] == nil {
			f.pending[kind] = map[string]struct{}{}
		}
		f.pending[kind][credKey] = struct{}{}
	}
	f.mu.Unlock()
	if changed && notify != nil {
		notify(credKey)
	}
	return changed && message != ""
}

// clearNamespace forgets every failure in namespace (it was deleted).
func (f *failures) clearNamespace(namespace string) {
	f.mu.Lock()
	var creds []string
	for cred, m := range f.byCred {
		if _, ok := m[namespace]; ok {
			creds = append(creds, cred)
		}
	}
	f.mu.Unlock()
	for _, c := range creds {
		f.set(c, namespace, "")
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
func (f *failures) forget(credKey string) {
	f.mu.Lock()
	delete(f.byCred, credKey)
	f.mu.Unlock()
}

// get returns the failures of a credential in the given namespaces, sorted
// by namespace.
func (f *failures) get(credKey string, inScope func(string) bool) []failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []failure
	for ns, msg := range f.byCred[credKey] {
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
	kind string
}

func (s *notifySource) Start(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	toRequest := requestForKey(s.kind)
	add := func(key string) {
		if req, ok := toRequest(key); ok {
			q.Add(req)
		}
	}
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

// requestForKey maps a credential key to the request of the credential
// controller of its kind.
func requestForKey(kind string) func(string) (reconcile.Request, bool) {
	return func(key string) (reconcile.Request, bool) {
		k, rest, _ := cutKind(key)
		if k != kind {
			return reconcile.Request{}, false
		}
		if kind == KindCluster {
			return reconcile.Request{NamespacedName: types.NamespacedName{Name: rest}}, true
		}
		ns, name, ok := cutKind(rest)
		if !ok {
			return reconcile.Request{}, false
		}
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}, true
	}
}

func cutKind(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
