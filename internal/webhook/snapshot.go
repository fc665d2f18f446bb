package webhook

import (
	"fmt"
	"maps"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/mirror"
)

// Snapshot is everything the mutator needs, compiled from the informer
// caches when a credential or mirror changes, so that admitting a Pod
// costs no parsing and no API call.
type Snapshot struct {
	cluster    []*credRule
	namespaced map[string][]*credRule
	mirrors    []*mirrorSet
	merged     rulesCache
	images     imageCache
	// Problems are objects that could not be compiled; they are skipped.
	Problems []string
}

// credRule is a credential compiled for admission: where it acts and which
// images it is for.
type credRule struct {
	*credential.Credential
	// secretName is computed once: every admission asks for it.
	secretName string
	scope      *credential.Scope
	// matcher holds the credential's registry keys, so matching an image
	// is the kubelet's own lookup.
	matcher *credential.Matcher
}

// display is how the Pod annotation names the credential.
func (c *credRule) display() string { return c.Key.Display() }

// SecretName is the managed Secret's name.
func (c *credRule) SecretName() string { return c.secretName }

// Matches reports whether the credential's registries cover the target.
func (c *credRule) Matches(t keyring.Target) bool { return c.matcher.Matches(t) }

type mirrorSet struct {
	name     string
	selector labels.Selector
	rules    []mirror.Rule
}

// NewSnapshot compiles credentials and mirrors. Objects that do not compile
// are reported in Problems and left out.
func NewSnapshot(regcredNamespace string, cluster []v1alpha1.ClusterRegistryCredential, namespaced []v1alpha1.RegistryCredential, mirrors []v1alpha1.ClusterImageMirror) *Snapshot {
	s := &Snapshot{namespaced: map[string][]*credRule{}}
	add := func(c *credential.Credential) *credRule {
		if !c.InjectionEnabled() {
			return nil
		}
		scope, err := c.Scope(regcredNamespace)
		if err != nil {
			s.Problems = append(s.Problems, fmt.Sprintf("%s %s: %v", c.Kind, c.Name, err))
			return nil
		}
		matcher, bad := c.Matcher()
		if len(bad) > 0 {
			s.Problems = append(s.Problems, fmt.Sprintf("%s %s: registry keys %v are not valid", c.Kind, c.Name, bad))
		}
		return &credRule{Credential: c, secretName: c.SecretName(), scope: scope, matcher: matcher}
	}
	for i := range cluster {
		if r := add(credential.FromCluster(&cluster[i])); r != nil {
			s.cluster = append(s.cluster, r)
		}
	}
	for i := range namespaced {
		if r := add(credential.FromNamespaced(&namespaced[i])); r != nil {
			s.namespaced[r.Namespace] = append(s.namespaced[r.Namespace], r)
		}
	}
	sort.Slice(s.cluster, func(i, j int) bool { return s.cluster[i].Name < s.cluster[j].Name })
	for _, list := range s.namespaced {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	}
	for i := range mirrors {
		m := &mirrors[i]
		set := &mirrorSet{name: m.Name}
		for _, r := range m.Spec.Mirrors {
			set.rules = append(set.rules, mirror.Rule{Source: r.Source, Mirror: r.Mirror})
		}
		if _, err := mirror.Compile(set.rules); err != nil {
			s.Problems = append(s.Problems, fmt.Sprintf("ClusterImageMirror %s: %v", m.Name, err))
			continue
		}
		if m.Spec.NamespaceSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(m.Spec.NamespaceSelector)
			if err != nil {
				s.Problems = append(s.Problems, fmt.Sprintf("ClusterImageMirror %s: namespaceSelector: %v", m.Name, err))
				continue
			}
			set.selector = sel
		}
		s.mirrors = append(s.mirrors, set)
	}
	sort.Slice(s.mirrors, func(i, j int) bool { return s.mirrors[i].name < s.mirrors[j].name })
	return s
}

// changeHandler marks the snapshot stale on the informer events that can
// change it. Status writes (every token refresh, every namespace count)
// are most of a credential's updates and change nothing the snapshot
// compiles: spec (generation), labels, annotations and deletion.
func (h *Handler) changeHandler() toolscache.ResourceEventHandlerFuncs {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { h.dirty.Store(true) },
		UpdateFunc: func(oldObj, newObj any) {
			if snapshotChanged(oldObj, newObj) {
				h.dirty.Store(true)
			}
		},
		DeleteFunc: func(any) { h.dirty.Store(true) },
	}
}

func snapshotChanged(oldObj, newObj any) bool {
	o, ok1 := oldObj.(metav1.Object)
	n, ok2 := newObj.(metav1.Object)
	if !ok1 || !ok2 {
		return true
	}
	return o.GetGeneration() != n.GetGeneration() || o.GetGeneration() == 0 ||
		!maps.Equal(o.GetLabels(), n.GetLabels()) || !maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
		!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp())
}

// credentialsFor lists the credentials that act in ns, cluster ones first.
func (s *Snapshot) credentialsFor(ns *corev1.Namespace) []*credRule {
	var out []*credRule
	for _, c := range s.cluster {
		if c.scope.Applies(ns) {
			out = append(out, c)
		}
	}
	for _, c := range s.namespaced[ns.Name] {
		if c.scope.Applies(ns) {
			out = append(out, c)
		}
	}
	return out
}

// rulesFor returns the mirror rules that apply in ns, merged, compiled once
// per distinct combination, with a key naming the combination.
func (s *Snapshot) rulesFor(ns *corev1.Namespace) (string, *mirror.Rules) {
	var names []string
	var rules []mirror.Rule
	for _, m := range s.mirrors {
		if m.selector == nil || m.selector.Matches(labels.Set(ns.Labels)) {
			names = append(names, m.name)
			rules = append(rules, m.rules...)
		}
	}
	if len(rules) == 0 {
		return "", nil
	}
	key := strings.Join(names, ",")
	return key, s.merged.get(key, rules)
}
