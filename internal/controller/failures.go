package controller

import (
	"sort"
	"sync"

	"regcred.dev/regcred/internal/credential"
)

// failures remembers, per credential, the namespaces where the namespace
// controller could not sync, and wakes the credential controller of that
// credential's kind when that changes. It lives in memory: after a restart
// every namespace is reconciled again and refills it.
type failures struct {
	mu     sync.Mutex
	byCred map[credential.Key]map[string]string // namespace -> message
	*wakeups
}

func newFailures() *failures {
	return &failures{byCred: map[credential.Key]map[string]string{}, wakeups: newWakeups()}
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
	f.mu.Unlock()
	if changed {
		f.wake(key)
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
