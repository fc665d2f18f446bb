package credential

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/mirror"
	"regcred.dev/regcred/internal/redact"
)

// Catalogue is every credential and mirror of a cluster, each compiled
// once per generation of its object: where it acts, which ServiceAccounts
// it selects, which images it is for, and the mirror rules per namespace.
// It answers the questions every front end asks — which credentials act
// in a namespace, which cover an image there, which mirror rules apply —
// without parsing anything on the way. It is fed object by object (Put,
// Delete; cachefeed does so from the informer caches) and is safe for
// concurrent use: readers get immutable entries.
type Catalogue struct {
	regcredNamespace string

	mu         sync.RWMutex
	cluster    []*Entry            // by name
	namespaced map[string][]*Entry // namespace -> entries by name
	mirrors    []*mirrorSet        // by name
	mirrorGen  uint64
	problems   map[string]string // object -> why it could not be compiled

	// merged are mirror sets merged per combination, under their own
	// lock so that a cache hit never blocks the catalogue's writers.
	mergedMu sync.Mutex
	merged   map[string]*mirror.Rules

	compiles  atomic.Int64
	version   atomic.Uint64
	listeners []func(Key)
	watchers  []func()
	synced    chan struct{}
	syncOnce  sync.Once
}

// NewCatalogue is an empty catalogue for a regcred installed in
// regcredNamespace (where ClusterRegistryCredentials never act).
func NewCatalogue(regcredNamespace string) *Catalogue {
	return &Catalogue{regcredNamespace: regcredNamespace, namespaced: map[string][]*Entry{},
		merged: map[string]*mirror.Rules{}, problems: map[string]string{}, synced: make(chan struct{})}
}

// Entry is one credential as compiled. Entries are never changed once
// published: a new generation of the object makes a new entry.
type Entry struct {
	*Credential
	secretName string
	scope      *Scope
	scopeErr   error
	saSelector labels.Selector
	saErr      error
	matcher    *Matcher
	keys       []keyMatcher
	badKeys    []string
	stamp      stamp
}

// keyMatcher is one registry key of a credential, as written, compiled.
type keyMatcher struct {
	key     string
	matcher *Matcher
}

// stamp is what an entry was compiled from: a change of anything else
// (status, resourceVersion) reuses the compiled parts.
type stamp struct {
	uid         types.UID
	generation  int64
	deleting    bool
	finalizers  int
	labels      map[string]string
	annotations map[string]string
}

func stampOf(o metav1.Object) stamp {
	return stamp{uid: o.GetUID(), generation: o.GetGeneration(), deleting: !o.GetDeletionTimestamp().IsZero(),
		finalizers: len(o.GetFinalizers()), labels: o.GetLabels(), annotations: o.GetAnnotations()}
}

// same reports whether an object with stamp n compiles as one with s did.
// An object without a generation (a fake client's) is always compiled.
func (s stamp) same(n stamp) bool {
	return s.generation != 0 && s.uid == n.uid && s.generation == n.generation && s.deleting == n.deleting &&
		s.finalizers == n.finalizers && maps.Equal(s.labels, n.labels) && maps.Equal(s.annotations, n.annotations)
}

// lifecycleChanged reports whether what acts on a credential's Secrets
// changed: its spec, its deletion, its finalizers (the namespace
// controller's triggers). A label or an annotation recompiles the entry,
// as cheap as it is rare, but wakes nobody.
func (s stamp) lifecycleChanged(n stamp) bool {
	return s.uid != n.uid || s.generation != n.generation || s.deleting != n.deleting || s.finalizers != n.finalizers
}

// Compile compiles one credential on its own (the catalogue does it once
// per generation; a caller holding a single object may too).
func Compile(c *Credential, regcredNamespace string) *Entry {
	e := &Entry{Credential: c, secretName: c.SecretName(), stamp: stampOf(c.Object)}
	e.scope, e.scopeErr = c.Scope(regcredNamespace)
	if sa := c.Spec.ServiceAccounts; sa.Mode == v1alpha1.ServiceAccountsSelector && sa.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(sa.Selector)
		if err != nil {
			e.saErr = fmt.Errorf("serviceAccounts.selector: %w", err)
		}
		e.saSelector = sel
	}
	e.matcher, e.badKeys = c.Matcher()
	for _, key := range c.Spec.Registries {
		m, bad := NewMatcher(c.Key.String(), []string{key})
		if len(bad) == 0 {
			e.keys = append(e.keys, keyMatcher{key: key, matcher: m})
		}
	}
	return e
}

// SecretName is the managed Secret's name.
func (e *Entry) SecretName() string { return e.secretName }

// Matches reports whether the kubelet would try the credential for the
// target.
func (e *Entry) Matches(t keyring.Target) bool { return e.matcher.Matches(t) }

// Applies reports whether the credential acts in ns; an error says its
// namespaceSelector is not valid.
func (e *Entry) Applies(ns *corev1.Namespace) (bool, error) {
	if e.scopeErr != nil {
		return false, e.scopeErr
	}
	return e.scope.Applies(ns), nil
}

// SelectsServiceAccount reports whether sa should list the Secret.
func (e *Entry) SelectsServiceAccount(sa *corev1.ServiceAccount) (bool, error) {
	switch e.Spec.ServiceAccounts.Mode {
	case v1alpha1.ServiceAccountsAll, "":
		return true, nil
	case v1alpha1.ServiceAccountsDefault:
		return sa.Name == "default", nil
	case v1alpha1.ServiceAccountsNone:
		return false, nil
	case v1alpha1.ServiceAccountsSelector:
		if e.saErr != nil || e.saSelector == nil {
			return false, e.saErr
		}
		return e.saSelector.Matches(labels.Set(sa.Labels)), nil
	default:
		return false, fmt.Errorf("unknown serviceAccounts.mode %q", e.Spec.ServiceAccounts.Mode)
	}
}

// mirrorSet is one ClusterImageMirror, compiled.
type mirrorSet struct {
	name              string
	namespaceSelector *metav1.LabelSelector // as written, for the admission policies
	selector          labels.Selector
	rules             []mirror.Rule
	compiled          *mirror.Rules
	stamp             stamp
}

// Put adds or replaces an object: a ClusterRegistryCredential, a
// RegistryCredential or a ClusterImageMirror (other types are ignored).
// It compiles only what changed beyond status, and tells the listeners
// of a credential that did change.
func (c *Catalogue) Put(obj any) {
	switch o := obj.(type) {
	case *v1alpha1.ClusterRegistryCredential:
		c.putCredential(FromCluster(o))
	case *v1alpha1.RegistryCredential:
		c.putCredential(FromNamespaced(o))
	case *v1alpha1.ClusterImageMirror:
		c.putMirror(o)
	}
}

// Delete removes an object.
func (c *Catalogue) Delete(obj any) {
	switch o := obj.(type) {
	case *v1alpha1.ClusterRegistryCredential:
		c.deleteCredential(Key{Kind: KindCluster, Name: o.Name})
	case *v1alpha1.RegistryCredential:
		c.deleteCredential(Key{Kind: KindNamespaced, Namespace: o.Namespace, Name: o.Name})
	case *v1alpha1.ClusterImageMirror:
		c.mu.Lock()
		c.mirrors = slices.DeleteFunc(slices.Clone(c.mirrors), func(m *mirrorSet) bool { return m.name == o.Name })
		delete(c.problems, "ClusterImageMirror "+o.Name)
		c.mirrorsChanged()
		c.mu.Unlock()
		c.versionChanged()
	}
}

func (c *Catalogue) putCredential(cr *Credential) {
	c.mu.Lock()
	list := c.listFor(cr.Key)
	i, found := slices.BinarySearchFunc(list, cr.Name, byName)
	var e *Entry
	now := stampOf(cr.Object)
	changed := !found || list[i].stamp.lifecycleChanged(now)
	if found && list[i].stamp.same(now) {
		// Status only: the compiled parts stay, the view is the new one.
		copied := *list[i]
		copied.Credential = cr
		e = &copied
	} else {
		e = Compile(cr, c.regcredNamespace)
		c.compiles.Add(1)
		c.version.Add(1)
		defer c.versionChanged()
	}
	list = slices.Clone(list)
	if found {
		list[i] = e
	} else {
		list = slices.Insert(list, i, e)
	}
	c.setList(cr.Key, list)
	c.noteProblems(e)
	c.mu.Unlock()
	if changed {
		c.notify(cr.Key)
	}
}

func (c *Catalogue) deleteCredential(key Key) {
	c.mu.Lock()
	list := c.listFor(key)
	i, found := slices.BinarySearchFunc(list, key.Name, byName)
	if found {
		c.setList(key, slices.Delete(slices.Clone(list), i, i+1))
		c.version.Add(1)
		defer c.versionChanged()
	}
	delete(c.problems, key.String())
	c.mu.Unlock()
	if found {
		c.notify(key)
	}
}

func byName(e *Entry, name string) int { return cmp.Compare(e.Name, name) }

// listFor and setList hold c.mu.
func (c *Catalogue) listFor(k Key) []*Entry {
	if k.Kind == KindCluster {
		return c.cluster
	}
	return c.namespaced[k.Namespace]
}

func (c *Catalogue) setList(k Key, list []*Entry) {
	switch {
	case k.Kind == KindCluster:
		c.cluster = list
	case len(list) == 0:
		delete(c.namespaced, k.Namespace)
	default:
		c.namespaced[k.Namespace] = list
	}
}

func (c *Catalogue) noteProblems(e *Entry) {
	var why []string
	if e.scopeErr != nil {
		why = append(why, e.scopeErr.Error())
	}
	if len(e.badKeys) > 0 {
		why = append(why, fmt.Sprintf("registry keys %v are not valid", e.badKeys))
	}
	if len(why) == 0 {
		delete(c.problems, e.Key.String())
		return
	}
	// A selector's error quotes what its author wrote: one line, bounded.
	c.problems[e.Key.String()] = redact.Message(fmt.Sprintf("%s %s: %s", e.Kind, e.Name, strings.Join(why, "; ")))
}

// OnChange registers f to hear of every credential created, deleted, or
// given a new spec, deletion or finalizers (not a status write, label or
// annotation), after the catalogue holds the change.
// Register before feeding.
func (c *Catalogue) OnChange(f func(Key)) { c.listeners = append(c.listeners, f) }

// OnVersion registers f to hear of every change of Version, after the
// catalogue holds it: a renderer of the whole catalogue (the admission
// policies) rebuilds then. f must not block. Register before feeding.
func (c *Catalogue) OnVersion(f func()) { c.watchers = append(c.watchers, f) }

func (c *Catalogue) versionChanged() {
	for _, f := range c.watchers {
		f()
	}
}

func (c *Catalogue) notify(k Key) {
	for _, f := range c.listeners {
		f(k)
	}
}

// MarkSynced records that every object that existed at the start has
// been put; Synced is closed then.
func (c *Catalogue) MarkSynced() { c.syncOnce.Do(func() { close(c.synced) }) }

// Synced is closed once the catalogue holds what existed at the start.
func (c *Catalogue) Synced() <-chan struct{} { return c.synced }

// Compiles counts the compilations since the catalogue was made: a
// status write must not add to it.
func (c *Catalogue) Compiles() int64 { return c.compiles.Load() }

// Version changes whenever the compiled catalogue does (not on status
// writes): a reader that logs Problems can do so once per change.
func (c *Catalogue) Version() uint64 { return c.version.Load() }

// Problems are the objects that could not be fully compiled, one line
// each, in a stable order. A credential with an invalid selector acts
// nowhere; invalid registry keys are left out of its matcher.
func (c *Catalogue) Problems() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := slices.Collect(maps.Values(c.problems))
	slices.Sort(out)
	return out
}
