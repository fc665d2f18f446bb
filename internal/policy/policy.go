// Package policy compiles regcred's Pod injection into
// MutatingAdmissionPolicies, so that the API server itself rewrites images
// by the ClusterImageMirrors and adds the pull Secrets of the credentials
// that match them, in CEL, with no webhook on the admission path. It is
// one more rendering of the compiled catalogue the webhook decides with,
// and decides the same way:
//
//   - each image is parsed with Docker's normalization (reference
//     grammar, "nginx" → "docker.io/library/nginx", the 255-character
//     path, the digest algorithms);
//   - the most specific mirror rule of the namespace's ClusterImageMirrors
//     rewrites it, keeping tag and digest (":latest" when neither);
//   - the rewritten name is matched by the kubelet's rules: a credential's
//     registry key matches when the label counts and ports are equal, each
//     label matches as a glob, and the key's path is a string prefix of
//     the image's path; Docker Hub images also take an "index.docker.io"
//     key;
//   - the Secrets of the matching credentials that act in the namespace
//     are appended to imagePullSecrets in the catalogue's order, except
//     those listed already, and the Pod is annotated as the webhook does.
//
// Registry keys are compiled to regular expressions here, in Go, from the
// keyring package's own parse of each key; in CEL each image is parsed
// once and each acting credential costs one match per image.
//
// A policy cannot create a Secret: the namespace controller does, as for
// ServiceAccounts, so the first Pod of a brand-new namespace may name a
// Secret that is not there yet (the kubelet retries the pull).
package policy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/mirror"
)

// Labels regcred puts on the objects it generates, to find and clean them
// up.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	managedBy      = "regcred"
	// LabelPolicy marks a generated policy or binding.
	LabelPolicy = "regcred.dev/pod-injection"
	// DefaultPrefix names the generated objects.
	DefaultPrefix = "regcred-pod-injection"
)

// Options say how to render.
type Options struct {
	// Namespace is regcred's own; no Pod there is touched.
	Namespace string
	// ExcludeNamespaces are namespaces whose Pods are never touched,
	// besides credential.AlwaysExcluded and Namespace.
	ExcludeNamespaces []string
	// Prefix names the objects: Prefix for the cluster credentials and
	// the mirrors, Prefix-NAMESPACE for a namespace's RegistryCredentials
	// (default "regcred-pod-injection").
	Prefix string
	// FailurePolicy of the policies: Ignore (default) admits a Pod the
	// policy cannot evaluate, unchanged; Fail refuses it.
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// MaxKeysPerPolicy bounds the registry keys one policy carries
	// (default DefaultMaxKeysPerPolicy): the cluster credentials' policy,
	// or one namespace's; past it credentials are refused by name order.
	MaxKeysPerPolicy int
	// MaxExpressionLength bounds the characters of one CEL expression
	// (default DefaultMaxExpressionLength).
	MaxExpressionLength int
	// MaxKeysPerCredential bounds one credential's keys (default
	// DefaultMaxKeysPerCredential): a credential with more is refused in
	// policy mode, with a reason, rather than carried in part.
	MaxKeysPerCredential int
}

// Bounds on what a policy carries. CEL's budget is per Pod: one
// expression may spend 1,000,000 cost units, a whole policy 10,000,000,
// and a Pod with many images costs more than one with few (see
// docs/pod-injection-policies.md for the measured costs). With these
// bounds a Pod of 64 distinct images, every credential acting, stays
// under a quarter of the per-expression limit (TestCostWithinBudget):
// images cost about 1,500 each, credentials a few dozen.
const (
	DefaultMaxKeysPerPolicy     = 400
	DefaultMaxKeysPerCredential = 64
	// The API server's CEL parser refuses expressions past 100,000 code
	// points; lit writes ASCII only, so characters are code points.
	DefaultMaxExpressionLength = 90_000
)

// Rendered is the set of objects that carry the injection.
type Rendered struct {
	Policies []*admissionregistrationv1.MutatingAdmissionPolicy
	Bindings []*admissionregistrationv1.MutatingAdmissionPolicyBinding
	// Carried counts the credentials the policies carry.
	Carried int
	// Refused are credentials left out, each with the reason, for their
	// status and Events.
	Refused []Refusal
}

// Refusal is a credential the policies cannot carry.
type Refusal struct {
	Key    credential.Key
	Reason string
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.FailurePolicy == "" {
		o.FailurePolicy = admissionregistrationv1.Ignore
	}
	if o.MaxKeysPerPolicy <= 0 {
		o.MaxKeysPerPolicy = DefaultMaxKeysPerPolicy
	}
	if o.MaxKeysPerCredential <= 0 {
		o.MaxKeysPerCredential = DefaultMaxKeysPerCredential
	}
	if o.MaxExpressionLength <= 0 {
		o.MaxExpressionLength = DefaultMaxExpressionLength
	}
	return o
}

// compiledCredential is one credential ready for CEL.
type compiledCredential struct {
	entry *credential.Entry
	// exact are the keys without globs: "host|port" and the path prefix,
	// found by a map lookup.
	exact [][2]string
	// globs are the other keys: an index ("labels|literal suffix|port")
	// and an expression over target strings.
	globs [][2]string
	// hub: a key "index.docker.io", which Docker Hub images also take.
	hub  bool
	keys int
}

// Render compiles the injection view into policies and bindings. The
// first policy carries the mirrors and the ClusterRegistryCredentials;
// each namespace's RegistryCredentials have a policy of their own. It is
// a pure function: the same view renders the same objects.
func Render(in credential.Injection, opts Options) *Rendered {
	opts = opts.withDefaults()
	out := &Rendered{}
	var cluster []compiledCredential
	tenants := map[string][]compiledCredential{}
	var namespaces []string
	for _, e := range in.Credentials {
		cc, reason := compileCredential(e, opts.MaxKeysPerCredential)
		if reason != "" {
			out.Refused = append(out.Refused, Refusal{Key: e.Key, Reason: reason})
			continue
		}
		if cc == nil {
			continue // no key the kubelet accepts: it matches no image
		}
		out.Carried++
		if e.Kind == credential.KindCluster {
			cluster = append(cluster, *cc)
			continue
		}
		if _, seen := tenants[e.Namespace]; !seen {
			namespaces = append(namespaces, e.Namespace)
		}
		tenants[e.Namespace] = append(tenants[e.Namespace], *cc)
	}
	// The first policy carries the mirrors and the cluster credentials,
	// for every namespace; each namespace with RegistryCredentials has a
	// policy of its own, bound to that namespace only. Whatever a tenant
	// writes then sizes and costs its own namespace's policy only: it
	// cannot make another namespace's policy too large to write, nor
	// spend another namespace's CEL budget.
	kept := out.bound(cluster, nil, in.Mirrors, opts, opts.Prefix, "the ClusterRegistryCredentials")
	p, b := renderPolicy(opts.Prefix, kept, nil, in.Mirrors, true, opts)
	out.Policies = append(out.Policies, p)
	out.Bindings = append(out.Bindings, b)
	slices.Sort(namespaces)
	for _, ns := range namespaces {
		name := opts.Prefix + "-" + ns
		kept := out.bound(tenants[ns], []string{ns}, in.Mirrors, opts, name, "the RegistryCredentials of namespace "+ns)
		if len(kept) == 0 {
			continue
		}
		// The namespace's policy matches the names the mirrors rewrite
		// to, whether or not the first policy ran before it (the API
		// server runs them in no fixed order); only the first rewrites.
		p, b := renderPolicy(name, kept, []string{ns}, in.Mirrors, false, opts)
		out.Policies = append(out.Policies, p)
		out.Bindings = append(out.Bindings, b)
	}
	return out
}

// bound keeps the credentials one policy can carry, in the catalogue's
// order, and refuses the others with the reason: no more than
// MaxKeysPerPolicy registry keys, and no expression longer than
// MaxExpressionLength characters (the API server compiles no CEL
// expression past 100,000 code points, and keys and names are long).
func (out *Rendered) bound(creds []compiledCredential, namespaces []string, mirrors []credential.MirrorSet, opts Options, name, whose string) []compiledCredential {
	keys := 0
	for _, c := range creds {
		keys += c.keys
	}
	if keys <= opts.MaxKeysPerPolicy && longestExpression(creds, mirrors) <= opts.MaxExpressionLength {
		return creds
	}
	var kept []compiledCredential
	keys = 0
	for _, c := range creds {
		reason := ""
		switch {
		case keys+c.keys > opts.MaxKeysPerPolicy:
			reason = fmt.Sprintf("%s have more registry keys than the %d one admission policy carries; this one is past the bound (by name order)", whose, opts.MaxKeysPerPolicy)
		case longestExpression(append(slices.Clip(kept), c), mirrors) > opts.MaxExpressionLength:
			reason = fmt.Sprintf("%s would make admission policy %s longer than the %d characters one CEL expression holds; this one is past the bound (by name order)", whose, name, opts.MaxExpressionLength)
		}
		if reason != "" {
			out.Refused = append(out.Refused, Refusal{Key: c.entry.Key, Reason: reason})
			out.Carried--
			continue
		}
		keys += c.keys
		kept = append(kept, c)
	}
	return kept
}

// longestExpression is the length of the longest expression a policy of
// creds and mirrors holds.
func longestExpression(creds []compiledCredential, mirrors []credential.MirrorSet) int {
	n := len(patchExpression)
	for _, v := range variables(creds, mirrors, true) {
		n = max(n, len(v.Expression))
	}
	return n
}

// compileCredential compiles a credential's keys into one expression
// over target strings; nil when no key can ever match.
func compileCredential(e *credential.Entry, maxKeys int) (*compiledCredential, string) {
	keys := e.Keys()
	if len(keys) > maxKeys {
		return nil, fmt.Sprintf("%d registry keys, more than the %d an admission policy carries for one credential", len(keys), maxKeys)
	}
	cc := &compiledCredential{entry: e, keys: len(keys)}
	for _, k := range keys {
		norm, err := keyring.NormalizeKey(k)
		if err != nil {
			continue
		}
		if norm == "index.docker.io" {
			cc.hub = true
		}
		t := keyring.ParseTarget(norm)
		if !t.Valid() {
			continue
		}
		if !slices.ContainsFunc(t.Labels(), func(l string) bool { return strings.ContainsAny(l, `*?[\`) }) {
			cc.exact = append(cc.exact, [2]string{strings.Join(t.Labels(), ".") + "|" + t.Port(), t.Path()})
			continue
		}
		if re, ok := keyPattern(t); ok {
			cc.globs = append(cc.globs, [2]string{globIndex(t), re})
		}
	}
	if len(cc.exact) == 0 && len(cc.globs) == 0 && !cc.hub {
		return nil, ""
	}
	return cc, ""
}

// globIndex is where a glob key is filed: its label count, its labels
// after the last one with a glob, and its port. A target is looked up
// under each of its label suffixes, so only the glob keys that can match
// are tried.
func globIndex(t keyring.Target) string {
	labels := t.Labels()
	last := 0
	for i, l := range labels {
		if strings.ContainsAny(l, `*?[\`) {
			last = i
		}
	}
	return strconv.Itoa(len(labels)) + "|" + strings.Join(labels[last+1:], ".") + "|" + t.Port()
}

// keyPattern is a normalized key as an expression over target strings
// "H|host|port|path" (H is "h" for a Docker Hub image, "n" otherwise),
// from the keyring's own parse of the key.
func keyPattern(t keyring.Target) (string, bool) {
	labels := make([]string, len(t.Labels()))
	for i, l := range t.Labels() {
		re, ok := globLabel(l)
		if !ok {
			return "", false
		}
		labels[i] = re
	}
	return `^[hn]\|` + strings.Join(labels, `\.`) + `\|` + regexp.QuoteMeta(t.Port()) + `\|` + regexp.QuoteMeta(t.Path()), true
}

// The reference grammar, as distribution/reference parses.
var (
	referencePattern = reference.ReferenceRegexp.String()
	namePattern      = "^(?:" + reference.NameRegexp.String() + ")$"
	domainPattern    = "^(?:" + reference.DomainRegexp.String() + ")$"
	// The algorithms go-digest knows, with their lengths.
	digestPattern = `^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$`
)

func renderPolicy(name string, creds []compiledCredential, namespaces []string, mirrors []credential.MirrorSet, rewrite bool, opts Options) (*admissionregistrationv1.MutatingAdmissionPolicy, *admissionregistrationv1.MutatingAdmissionPolicyBinding) {
	meta := metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelManagedBy: managedBy, LabelPolicy: "true"}}
	scope := admissionregistrationv1.NamespacedScope
	excluded := append(slices.Clone(credential.AlwaysExcluded), opts.Namespace)
	for _, ns := range opts.ExcludeNamespaces {
		if !slices.Contains(excluded, ns) {
			excluded = append(excluded, ns)
		}
	}
	nsSelector := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: excluded},
		{Key: credential.LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
	}}
	if namespaces != nil {
		nsSelector.MatchExpressions = append(nsSelector.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: namespaces})
	}
	failure := opts.FailurePolicy
	p := &admissionregistrationv1.MutatingAdmissionPolicy{
		ObjectMeta: meta,
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{
				NamespaceSelector: nsSelector,
				ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: credential.LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
				}},
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope},
					},
				}},
			},
			Variables:          variables(creds, mirrors, rewrite),
			Mutations:          []admissionregistrationv1.Mutation{{PatchType: admissionregistrationv1.PatchTypeJSONPatch, JSONPatch: &admissionregistrationv1.JSONPatch{Expression: patchExpression}}},
			FailurePolicy:      &failure,
			ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
		},
	}
	b := &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		ObjectMeta: meta,
		Spec:       admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: name},
	}
	return p, b
}

// variables are the policy's CEL, staged: each variable is evaluated at
// most once per admission, and the per-image lists line up by index.
func variables(creds []compiledCredential, mirrors []credential.MirrorSet, rewrite bool) []admissionregistrationv1.Variable {
	v := func(name, expr string) admissionregistrationv1.Variable {
		return admissionregistrationv1.Variable{Name: name, Expression: expr}
	}
	rewrites := `variables.imgs.transformList(i, m, variables.rs[i][1] != '' && variables.rs[i][2] == 'y' && variables.rs[i][1] != m.r, [m.p, variables.rs[i][1], m.w, m.r])`
	if !rewrite {
		rewrites = `[['', '', '', '']].filter(r, false)`
	}
	return []admissionregistrationv1.Variable{
		// The images the kubelet pulls, in the webhook's order: where
		// each is (for the annotation), its JSON pointer, its reference.
		v("imgs", imagesExpression),
		// Digest: [before "@", after "@", "y" when there was an "@"].
		v("dg", `variables.imgs.map(m, m.r.indexOf('@') < 0 ? [m.r, '', ''] : [m.r.substring(0, m.r.indexOf('@')), m.r.substring(m.r.indexOf('@') + 1), 'y'])`),
		// Tag: [name, tag, "y" when there was a tag separator].
		v("tg", `variables.dg.map(x, x[0].lastIndexOf(':') > x[0].lastIndexOf('/') ? [x[0].substring(0, x[0].lastIndexOf(':')), x[0].substring(x[0].lastIndexOf(':') + 1), 'y'] : [x[0], '', ''])`),
		// Docker's domain split: [first component, the rest, "y" when the
		// name has a "/"].
		v("fc", `variables.tg.map(x, x[0].indexOf('/') < 0 ? ['', x[0], ''] : [x[0].substring(0, x[0].indexOf('/')), x[0].substring(x[0].indexOf('/') + 1), 'y'])`),
		// [domain, remote name] after normalization.
		v("dm", `variables.fc.transformList(i, f, f[2] != 'y' ? ['docker.io', 'library/' + f[1]] :
			f[0] == 'localhost' || f[0].matches('[.:]') || f[0].lowerAscii() != f[0] ?
				(f[0] == 'index.docker.io' || f[0] == 'docker.io' ? ['docker.io', f[1].contains('/') ? f[1] : 'library/' + f[1]] : [f[0], f[1]]) :
				['docker.io', variables.tg[i][0].contains('/') ? variables.tg[i][0] : 'library/' + variables.tg[i][0]])`),
		// The full name and whether the reference parses as
		// ParseNormalizedNamed parses it.
		v("nm", `variables.dm.transformList(i, d, [d[0] + '/' + d[1],
			!variables.imgs[i].r.matches('^[a-f0-9]{64}$') &&
			(d[1] + (variables.tg[i][2] == 'y' ? ':' + variables.tg[i][1] : '') + (variables.dg[i][2] == 'y' ? '@' + variables.dg[i][1] : '')).split(':')[0].lowerAscii() ==
				(d[1] + (variables.tg[i][2] == 'y' ? ':' + variables.tg[i][1] : '') + (variables.dg[i][2] == 'y' ? '@' + variables.dg[i][1] : '')).split(':')[0] &&
			(d[0] + '/' + d[1] + (variables.tg[i][2] == 'y' ? ':' + variables.tg[i][1] : '') + (variables.dg[i][2] == 'y' ? '@' + variables.dg[i][1] : '')).matches(`+lit(referencePattern)+`) &&
			size(d[0].matches(`+lit(domainPattern)+`) ? d[1] : d[0] + '/' + d[1]) <= 255 &&
			(variables.dg[i][2] != 'y' || variables.dg[i][1].matches(`+lit(digestPattern)+`)) ? 'y' : ''])`),
		// The mirror rules of the namespace's ClusterImageMirrors, most
		// specific first: [source, mirror].
		v("rules", rulesExpression(mirrors)),
		// The rule that rewrites each valid image: [] or [source, mirror].
		v("rw", `variables.nm.map(n, n[1] != 'y' ? [] : variables.rules.filter(r, n[0] == r[0] || n[0].startsWith(r[0] + '/')))`),
		// The name after the first matching rule: [new name, "y"].
		v("nn", `variables.nm.transformList(i, n, size(variables.rw[i]) == 0 ? [n[0], ''] : [variables.rw[i][0][1] + n[0].substring(size(variables.rw[i][0][0])), 'y'])`),
		// [name to match, rewritten reference or "", "y" when valid].
		v("rs", `variables.nn.transformList(i, n, variables.nm[i][1] != 'y' ? ['', '', ''] : n[1] != 'y' ? [n[0], '', 'y'] :
			[n[0],
			 n[0] + (variables.tg[i][2] == 'y' ? ':' + variables.tg[i][1] : '') + (variables.dg[i][2] == 'y' ? '@' + variables.dg[i][1] : '') +
				(variables.tg[i][2] != 'y' && variables.dg[i][2] != 'y' ? ':latest' : ''),
			 n[0].matches(`+lit(namePattern)+`) &&
				size(n[0].split('/')[0].matches(`+lit(domainPattern)+`) ? n[0].substring(size(n[0].split('/')[0]) + 1) : n[0]) <= 255 ? 'y' : ''])`),
		// [host[:port], path] of each name to match.
		v("hp", `variables.rs.map(r, r[2] != 'y' ? ['', ''] : [r[0].substring(0, r[0].indexOf('/')), r[0].substring(r[0].indexOf('/'))])`),
		// The target each credential's expression matches:
		// "h|host|port|path" ("n|…" off Docker Hub); "" for an image
		// that does not parse.
		v("tt", `variables.hp.transformList(i, h, variables.rs[i][2] != 'y' ? '' :
			(h[0] == 'docker.io' || h[0] == 'index.docker.io' || !h[0].matches('[.:]') ? 'h|' : 'n|') +
			(h[0].matches(':[0-9]+$') ?
				(h[0].substring(0, h[0].lastIndexOf(':')).startsWith('[') && h[0].substring(0, h[0].lastIndexOf(':')).endsWith(']') ?
					h[0].substring(1, h[0].lastIndexOf(':') - 1) : h[0].substring(0, h[0].lastIndexOf(':'))) + '|' + h[0].substring(h[0].lastIndexOf(':') + 1) :
				h[0] + '|') + '|' + h[1])`),
		// The targets, each once.
		v("ts", `variables.tt.filter(t, t != '').distinct()`),
		// Each carried credential: its Secret, its name for the
		// annotation, and whether it acts here and matches an image.
		// The namespace is not being deleted (no credential acts then).
		v("live", `!has(namespaceObject.metadata.deletionTimestamp) && namespaceObject.status.?phase.orValue('') != 'Terminating'`),
		// The indexes of the credentials whose keys match an image, as
		// a set.
		v("hits", hitsExpression(creds)),
		v("cs", credentialsExpression(creds)),
		// The names the Pod lists already.
		v("present", `object.spec.?imagePullSecrets.orValue([]).map(s, string(s.?name.orValue('')))`),
		// The credentials whose Secrets are added: matching, not listed,
		// the first of any that share a Secret name.
		v("add", `variables.cs.transformList(i, c, c[2] == 'y' && !(c[0] in variables.present) &&
			!variables.cs.slice(0, i).exists(d, d[2] == 'y' && d[0] == c[0]), c)`),
		// The images rewritten: [JSON pointer, new reference, where, original].
		v("rewrites", rewrites),
		v("annotations", `object.metadata.?annotations.orValue({})`),
		// regcred.dev/injected: the names recorded before and now, sorted.
		v("injected", `(variables.annotations[?'`+AnnotationInjected+`'].orValue('').split(',').filter(n, n != '') + variables.add.map(c, c[1])).distinct().sort().join(',')`),
		// regcred.dev/rewritten: the JSON object of originals, the entries
		// recorded before kept (read when in the webhook's own form).
		v("prior", `variables.annotations[?'`+AnnotationRewritten+`'].orValue('').matches('^\\{("[^"\\\\<>&\\x00-\\x1f\\x{2028}\\x{2029}]*":"[^"\\\\<>&\\x00-\\x1f\\x{2028}\\x{2029}]*"(,"[^"\\\\<>&\\x00-\\x1f\\x{2028}\\x{2029}]*":"[^"\\\\<>&\\x00-\\x1f\\x{2028}\\x{2029}]*")*)?\\}$') && variables.annotations[?'`+AnnotationRewritten+`'].orValue('') != '{}' ?
			variables.annotations[?'`+AnnotationRewritten+`'].orValue('').substring(2, size(variables.annotations[?'`+AnnotationRewritten+`'].orValue('')) - 2).split('","').map(e, [e.split('":"')[0], e.split('":"')[1]]) : []`),
		v("rewritten", `'{' + (variables.prior + variables.rewrites.filter(r, !variables.prior.exists(p, p[0] == r[2])).map(r, [r[2], r[3]])).map(e, '"' + e[0] + '":"' + e[1] + '"').sort().join(',') + '}'`),
	}
}

// Annotations the webhook writes; the policies write the same.
const (
	AnnotationInjected  = "regcred.dev/injected"
	AnnotationRewritten = "regcred.dev/rewritten"
)

// imagesExpression lists the images the kubelet pulls for a Pod, as
// credential.PodImages does.
const imagesExpression = `object.spec.?initContainers.orValue([]).transformList(i, c, {'w': string(c.?name.orValue('')), 'p': '/spec/initContainers/' + string(i) + '/image', 'r': string(c.?image.orValue(''))}) +
	object.spec.?containers.orValue([]).transformList(i, c, {'w': string(c.?name.orValue('')), 'p': '/spec/containers/' + string(i) + '/image', 'r': string(c.?image.orValue(''))}) +
	object.spec.?ephemeralContainers.orValue([]).transformList(i, c, {'w': string(c.?name.orValue('')), 'p': '/spec/ephemeralContainers/' + string(i) + '/image', 'r': string(c.?image.orValue(''))}) +
	object.spec.?volumes.orValue([]).transformList(i, v, has(v.image), {'w': 'volume/' + string(v.?name.orValue('')), 'p': '/spec/volumes/' + string(i) + '/image/reference', 'r': string(v.image.?reference.orValue(''))})`

// patchExpression is the one mutation: image rewrites, added Secrets,
// annotations, as JSON patch operations (the webhook's own patch).
const patchExpression = `variables.rewrites.map(r, JSONPatch{op: 'replace', path: r[0], value: r[1]}) +
	(size(variables.add) == 0 ? [] : size(variables.present) == 0 ?
		[JSONPatch{op: 'add', path: '/spec/imagePullSecrets', value: variables.add.map(c, {'name': c[0]})}] :
		variables.add.map(c, JSONPatch{op: 'add', path: '/spec/imagePullSecrets/-', value: {'name': c[0]}})) +
	(size(variables.add) == 0 && size(variables.rewrites) == 0 ? [] :
		(size(variables.annotations) == 0 ? [JSONPatch{op: 'add', path: '/metadata/annotations', value: {}}] : []) +
		(size(variables.add) == 0 ? [] : [JSONPatch{op: 'add', path: '/metadata/annotations/regcred.dev~1injected', value: variables.injected}]) +
		(size(variables.rewrites) == 0 ? [] : [JSONPatch{op: 'add', path: '/metadata/annotations/regcred.dev~1rewritten', value: variables.rewritten}]))`

// rulesExpression is the namespace's mirror rules, most specific first,
// ties in the order of the ClusterImageMirrors by name and their rules:
// mirror.Compile's order over the merged sets of Catalogue.Mirrors.
func rulesExpression(sets []credential.MirrorSet) string {
	type rule struct {
		source, mirror string
		segments       int
		set            int
	}
	var rules []rule
	for i, s := range sets {
		for _, r := range s.Rules {
			src, err1 := mirror.NormalizeSource(r.Source)
			mir, err2 := mirror.NormalizeMirror(r.Mirror)
			if err1 != nil || err2 != nil {
				continue
			}
			rules = append(rules, rule{source: src, mirror: mir, segments: strings.Count(src, "/") + 1, set: i})
		}
	}
	slices.SortStableFunc(rules, func(a, b rule) int { return b.segments - a.segments })
	if len(rules) == 0 {
		return `[['', '']].filter(r, false)`
	}
	items := make([]string, len(rules))
	for i, r := range rules {
		items[i] = "[" + lit(r.source) + ", " + lit(r.mirror) + ", " + selectorExpression(sets[r.set].NamespaceSelector, "") + " ? 'y' : '']"
	}
	return "[" + strings.Join(items, ",\n") + "].filter(r, r[2] == 'y').map(r, [r[0], r[1]])"
}

// credentialsExpression is each carried credential as [Secret name,
// annotation name, "y" when it acts in the namespace and matches an
// image].
func credentialsExpression(creds []compiledCredential) string {
	if len(creds) == 0 {
		return `[['', '', '']].filter(c, false)`
	}
	items := make([]string, len(creds))
	for i, c := range creds {
		items[i] = "[" + lit(c.entry.SecretName()) + ", " + lit(c.entry.Key.Display()) + ", " +
			actsExpression(c.entry) + " && " + lit(strconv.Itoa(i)) + " in variables.hits ? 'y' : '']"
	}
	return "[" + strings.Join(items, ",\n") + "]"
}

// hitsExpression lists, as strings, the indexes of the carried
// credentials whose keys match a target: keys without globs by a map
// lookup of "host|port" and a path prefix, glob keys by their expression,
// and Docker Hub images by the credentials with an "index.docker.io" key.
// Each credential then costs a lookup in this short list, not a match per
// image.
func hitsExpression(creds []compiledCredential) string {
	exact := map[string][]string{}
	globs := map[string][]string{}
	var hub []string
	for i, c := range creds {
		idx := lit(strconv.Itoa(i))
		for _, e := range c.exact {
			exact[e[0]] = append(exact[e[0]], "["+idx+", "+lit(e[1])+"]")
		}
		for _, g := range c.globs {
			globs[g[0]] = append(globs[g[0]], "["+idx+", "+lit(g[1])+"]")
		}
		if c.hub {
			hub = append(hub, idx)
		}
	}
	hostports := slices.Sorted(maps.Keys(exact))
	entries := make([]string, len(hostports))
	for i, hp := range hostports {
		entries[i] = lit(hp) + ": [" + strings.Join(exact[hp], ", ") + "]"
	}
	table := "{" + strings.Join(entries, ",\n") + "}"
	if len(entries) == 0 {
		table = "{'': [['', '']]}"
	}
	globTable := "{'': [['', '']]}"
	if len(globs) > 0 {
		indexes := slices.Sorted(maps.Keys(globs))
		items := make([]string, len(indexes))
		for i, k := range indexes {
			items[i] = lit(k) + ": [" + strings.Join(globs[k], ", ") + "]"
		}
		globTable = "{" + strings.Join(items, ",\n") + "}"
	}
	hubList := "['']" + ".filter(h, false)"
	if len(hub) > 0 {
		hubList = "[" + strings.Join(hub, ", ") + "]"
	}
	return "variables.ts.map(t, " + table + "[?(t.split('|')[1] + '|' + t.split('|')[2])].orValue([]).filter(e, t.split('|')[3].startsWith(e[1])).map(e, e[0]) +\n" +
		"[t.split('|')[1].split('.')].map(l, l.transformList(k, x, " + globTable + "[?(string(size(l)) + '|' + l.slice(size(l) - k, size(l)).join('.') + '|' + t.split('|')[2])].orValue([])).flatten())[0]" +
		".filter(g, t.matches(g[1])).map(g, g[0]) +\n" +
		"(t.startsWith('h|') ? " + hubList + " : [''].filter(h, false))).flatten().distinct().transformMapEntry(i, x, {x: true})"
}

// actsExpression is credential.Scope.Applies over namespaceObject (the
// always-excluded namespaces and regcred's are outside every policy's
// match constraints already).
func actsExpression(e *credential.Entry) string {
	live := `variables.live`
	if e.Kind == credential.KindNamespaced {
		return "(" + live + " && namespaceObject.metadata.name == " + lit(e.Namespace) + ")"
	}
	parts := []string{live}
	if len(e.Exclude) > 0 {
		parts = append(parts, "!(namespaceObject.metadata.name in "+listLit(e.Exclude)+")")
	}
	if sel := selectorExpression(e.NamespaceSelector, ""); sel != "true" {
		parts = append(parts, sel)
	}
	return "(" + strings.Join(parts, " && ") + ")"
}

// selectorExpression is a label selector over the namespace's labels;
// nil and the empty selector select everything, as
// metav1.LabelSelectorAsSelector has it.
func selectorExpression(s *metav1.LabelSelector, _ string) string {
	if s == nil {
		return "true"
	}
	labels := `namespaceObject.metadata.?labels.orValue({})`
	var parts []string
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, "("+lit(k)+" in "+labels+" && "+labels+"["+lit(k)+"] == "+lit(s.MatchLabels[k])+")")
	}
	for _, r := range s.MatchExpressions {
		k := lit(r.Key)
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			parts = append(parts, "("+k+" in "+labels+" && "+labels+"["+k+"] in "+listLit(r.Values)+")")
		case metav1.LabelSelectorOpNotIn:
			parts = append(parts, "(!("+k+" in "+labels+") || !("+labels+"["+k+"] in "+listLit(r.Values)+"))")
		case metav1.LabelSelectorOpExists:
			parts = append(parts, "("+k+" in "+labels+")")
		case metav1.LabelSelectorOpDoesNotExist:
			parts = append(parts, "!("+k+" in "+labels+")")
		default:
			// The catalogue refuses such a selector before it gets here.
			parts = append(parts, "false")
		}
	}
	if len(parts) == 0 {
		return "true"
	}
	return "(" + strings.Join(parts, " && ") + ")"
}

func listLit(values []string) string {
	items := make([]string, len(values))
	for i, v := range values {
		items[i] = lit(v)
	}
	if len(items) == 0 {
		return "['']" + ".filter(x, false)"
	}
	return "[" + strings.Join(items, ", ") + "]"
}

// lit is s as a CEL string literal. Everything outside printable ASCII,
// the quote and the backslash are written as escapes: whatever a tenant
// wrote (a registry key, a name) stays data.
func lit(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
