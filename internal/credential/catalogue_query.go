package credential

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/mirror"
	"regcred.dev/regcred/internal/redact"
)

// The questions the catalogue answers. Each returns entries in a stable
// order: ClusterRegistryCredentials by name, then the namespace's
// RegistryCredentials by name.

// Get is the entry of one credential, nil when there is none.
func (c *Catalogue) Get(k Key) *Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	list := c.listFor(k)
	if i, ok := slices.BinarySearchFunc(list, k.Name, byName); ok {
		return list[i]
	}
	return nil
}

// Candidates are the credentials that could act in namespace: every
// ClusterRegistryCredential and the namespace's RegistryCredentials,
// whether or not they select it (Entry.Applies tells).
func (c *Catalogue) Candidates(namespace string) []*Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Concat(c.cluster, c.namespaced[namespace])
}

// Acting are the credentials that act in ns: those whose Secret belongs
// there. A credential whose selector does not compile acts nowhere.
func (c *Catalogue) Acting(ns *corev1.Namespace) []*Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*Entry
	for _, list := range [][]*Entry{c.cluster, c.namespaced[ns.Name]} {
		for _, e := range list {
			if ok, _ := e.Applies(ns); ok {
				out = append(out, e)
			}
		}
	}
	return out
}

// ForServiceAccount are the credentials acting in ns whose Secret the
// ServiceAccount sa should list (spec.serviceAccounts); one whose selector
// does not compile selects none.
func (c *Catalogue) ForServiceAccount(ns *corev1.Namespace, sa *corev1.ServiceAccount) []*Entry {
	var out []*Entry
	for _, e := range c.Acting(ns) {
		if ok, _ := e.SelectsServiceAccount(sa); ok {
			out = append(out, e)
		}
	}
	return out
}

// Covering are the credentials, not being deleted, whose registries cover
// target for a Pod of namespace, whether or not they act there: what the
// kubelet would use for the image if their Secrets reached the Pod.
func (c *Catalogue) Covering(namespace string, target keyring.Target) []*Entry {
	var out []*Entry
	for _, e := range c.Candidates(namespace) {
		if !e.Deleting() && e.Matches(target) {
			out = append(out, e)
		}
	}
	return out
}

// MatchingKeys are the registry keys, as written, that cover target among
// the credentials that could act for a Pod of namespace (every
// ClusterRegistryCredential and the namespace's RegistryCredentials), each
// once, sorted. Another namespace's RegistryCredentials never count: a
// tenant's keys say nothing of other tenants' pulls.
func (c *Catalogue) MatchingKeys(namespace string, target keyring.Target) []string {
	var out []string
	for _, e := range c.Candidates(namespace) {
		for _, k := range e.keys {
			if k.matcher.Matches(target) {
				out = append(out, k.key)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Mirrors are the mirror rules that apply in ns, merged, compiled once per
// distinct combination, and a key naming the combination (it changes
// whenever a mirror does). No rule applies: "", nil.
func (c *Catalogue) Mirrors(ns *corev1.Namespace) (string, *mirror.Rules) {
	c.mu.RLock()
	var sets []*mirrorSet
	for _, m := range c.mirrors {
		if m.selector == nil || m.selector.Matches(labels.Set(ns.Labels)) {
			sets = append(sets, m)
		}
	}
	gen := c.mirrorGen
	c.mu.RUnlock()
	switch len(sets) {
	case 0:
		return "", nil
	case 1:
		return strconv.FormatUint(gen, 10) + ":" + sets[0].name, sets[0].compiled
	}
	names := make([]string, len(sets))
	for i, m := range sets {
		names[i] = m.name
	}
	key := strconv.FormatUint(gen, 10) + ":" + strings.Join(names, ",")
	c.mergedMu.Lock()
	defer c.mergedMu.Unlock()
	if r, ok := c.merged[key]; ok {
		return key, r
	}
	var rules []mirror.Rule
	for _, m := range sets {
		rules = append(rules, m.rules...)
	}
	// Each set compiled alone; a merge of valid sets stays valid. A key
	// of an older generation is never asked again: mirrorsChanged clears
	// them.
	merged, _ := mirror.Compile(rules)
	c.merged[key] = merged
	return key, merged
}

func (c *Catalogue) putMirror(o *v1alpha1.ClusterImageMirror) {
	if c.putMirrorLocked(o) {
		c.versionChanged()
	}
}

func (c *Catalogue) putMirrorLocked(o *v1alpha1.ClusterImageMirror) (changed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, found := slices.BinarySearchFunc(c.mirrors, o.Name, func(m *mirrorSet, name string) int { return strings.Compare(m.name, name) })
	if found && c.mirrors[i].stamp.same(stampOf(o)) {
		return false
	}
	set, err := compileMirror(o)
	list := slices.Clone(c.mirrors)
	switch {
	case err != nil && found:
		list = slices.Delete(list, i, i+1)
	case err != nil:
	case found:
		list[i] = set
	default:
		list = slices.Insert(list, i, set)
	}
	if err != nil {
		c.problems["ClusterImageMirror "+o.Name] = redact.Message(fmt.Sprintf("ClusterImageMirror %s: %v", o.Name, err))
	} else {
		delete(c.problems, "ClusterImageMirror "+o.Name)
	}
	c.mirrors = list
	c.mirrorsChanged()
	return true
}

// mirrorsChanged holds c.mu.
func (c *Catalogue) mirrorsChanged() {
	c.mirrorGen++
	c.version.Add(1)
	c.mergedMu.Lock()
	clear(c.merged)
	c.mergedMu.Unlock()
}

// MirrorGeneration changes whenever a mirror does: what a cache of
// rewritten images is valid for.
func (c *Catalogue) MirrorGeneration() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mirrorGen
}

func compileMirror(o *v1alpha1.ClusterImageMirror) (*mirrorSet, error) {
	set := &mirrorSet{name: o.Name, stamp: stampOf(o), namespaceSelector: o.Spec.NamespaceSelector}
	for _, r := range o.Spec.Mirrors {
		set.rules = append(set.rules, mirror.Rule{Source: r.Source, Mirror: r.Mirror})
	}
	compiled, err := mirror.Compile(set.rules)
	if err != nil {
		return nil, err
	}
	set.compiled = compiled
	if o.Spec.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(o.Spec.NamespaceSelector)
		if err != nil {
			return nil, fmt.Errorf("namespaceSelector: %w", err)
		}
		set.selector = sel
	}
	return set, nil
}

// Injection is what Pod injection decides with, for front ends that
// compile all of it at once (the admission policies): every credential
// whose Secret is added to Pods, not being deleted and with a valid
// selector, in the catalogue's order (ClusterRegistryCredentials by name,
// then RegistryCredentials by namespace and name), and every valid
// ClusterImageMirror by name.
type Injection struct {
	Credentials []*Entry
	Mirrors     []MirrorSet
}

// MirrorSet is one ClusterImageMirror as compiled.
type MirrorSet struct {
	Name string
	// NamespaceSelector as written; nil selects every namespace.
	NamespaceSelector *metav1.LabelSelector
	Rules             []mirror.Rule
}

// Injection returns the catalogue's injection view.
func (c *Catalogue) Injection() Injection {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out Injection
	add := func(list []*Entry) {
		for _, e := range list {
			if e.InjectionEnabled() && !e.Deleting() && e.scopeErr == nil {
				out.Credentials = append(out.Credentials, e)
			}
		}
	}
	add(c.cluster)
	namespaces := slices.Sorted(maps.Keys(c.namespaced))
	for _, ns := range namespaces {
		add(c.namespaced[ns])
	}
	for _, m := range c.mirrors {
		out.Mirrors = append(out.Mirrors, MirrorSet{Name: m.name, NamespaceSelector: m.namespaceSelector, Rules: m.rules})
	}
	return out
}

// Keys are the credential's registry keys the kubelet accepts, as
// written.
func (e *Entry) Keys() []string {
	out := make([]string, len(e.keys))
	for i, k := range e.keys {
		out[i] = k.key
	}
	return out
}
