// Package policytest evaluates generated MutatingAdmissionPolicies in
// process, with the API server's own compiler and JSON patcher
// (k8s.io/apiserver), for fuzz tests and cost measurements. Only tests
// import it: the manager does not carry the API server's CEL.
package policytest

import (
	"context"
	"fmt"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating/patch"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

var (
	podGVK = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	podGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
)

// Evaluator runs compiled policies.
type Evaluator struct {
	policies []compiled
	scheme   *runtime.Scheme
}

type compiled struct {
	policy   *admissionregistrationv1.MutatingAdmissionPolicy
	compiler *plugincel.CompositedCompiler
	mutator  plugincel.MutatingEvaluator
}

// New compiles the policies as the API server validates new ones (the
// environment of new expressions): an expression the API server would
// refuse fails here.
func New(policies []*admissionregistrationv1.MutatingAdmissionPolicy) (*Evaluator, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	ev := &Evaluator{scheme: scheme}
	for _, p := range policies {
		compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
		if err != nil {
			return nil, err
		}
		opts := plugincel.OptionalVariableDeclarations{HasAuthorizer: true}
		vars := make([]plugincel.NamedExpressionAccessor, len(p.Spec.Variables))
		for i, v := range p.Spec.Variables {
			vars[i] = &validating.Variable{Name: v.Name, Expression: v.Expression}
			if r := compiler.CompileAndStoreVariable(vars[i], opts, environment.NewExpressions); r.Error != nil {
				return nil, fmt.Errorf("policy %s, variable %s: %v", p.Name, v.Name, r.Error)
			}
		}
		if len(p.Spec.Mutations) != 1 || p.Spec.Mutations[0].JSONPatch == nil {
			return nil, fmt.Errorf("policy %s: expected one JSON patch mutation", p.Name)
		}
		popts := opts
		popts.HasPatchTypes = true
		m := compiler.CompileMutatingEvaluator(&patch.JSONPatchCondition{Expression: p.Spec.Mutations[0].JSONPatch.Expression}, popts, environment.NewExpressions)
		if errs := m.CompilationErrors(); len(errs) > 0 {
			return nil, fmt.Errorf("policy %s, mutation: %v", p.Name, errs)
		}
		ev.policies = append(ev.policies, compiled{policy: p, compiler: compiler, mutator: m})
	}
	return ev, nil
}

// Result is a Pod after the policies.
type Result struct {
	Pod *corev1.Pod
	// Cost is the CEL cost the policies spent.
	Cost int64
}

// Admit runs every policy whose match constraints select the Pod and its
// namespace, in the order given, on a copy of pod.
func (ev *Evaluator) Admit(ctx context.Context, pod *corev1.Pod, ns *corev1.Namespace) (*Result, error) {
	cur := pod.DeepCopy()
	if cur.Namespace == "" {
		cur.Namespace = ns.Name
	}
	res := &Result{}
	for _, c := range ev.policies {
		if !selects(c.policy.Spec.MatchConstraints, cur, ns) {
			continue
		}
		cctx := c.compiler.CreateContext(ctx)
		attrs := admission.NewAttributesRecord(cur, nil, podGVK, cur.Namespace, cur.Name, podGVR, "", admission.Create, &metav1.CreateOptions{}, false, nil)
		versioned := &admission.VersionedAttributes{Attributes: attrs, VersionedKind: podGVK, VersionedObject: admission.NewLazyObject(cur)}
		budget := int64(celconfig.RuntimeCELCostBudget)
		request := plugincel.CreateAdmissionRequest(attrs, metav1.GroupVersionResource(podGVR), metav1.GroupVersionKind(podGVK))
		_, remaining, err := c.mutator.ForInput(cctx, versioned, request, plugincel.OptionalVariableBindings{}, ns, budget)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", c.policy.Name, err)
		}
		// The patcher evaluates again, in a fresh context, as the API
		// server does once per mutation.
		out, err := patch.NewJSONPatcher(c.mutator).Patch(c.compiler.CreateContext(ctx), patch.Request{
			MatchedResource:     podGVR,
			VersionedAttributes: versioned,
			ObjectInterfaces:    admission.NewObjectInterfacesFromScheme(ev.scheme),
			Namespace:           ns,
		}, budget)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", c.policy.Name, err)
		}
		res.Cost += budget - remaining
		p, ok := out.(*corev1.Pod)
		if !ok {
			return nil, fmt.Errorf("policy %s returned %T", c.policy.Name, out)
		}
		cur = p
	}
	res.Pod = cur
	return res, nil
}

// selects applies a policy's namespace and object selectors.
func selects(m *admissionregistrationv1.MatchResources, pod *corev1.Pod, ns *corev1.Namespace) bool {
	if m == nil {
		return true
	}
	nsLabels := labels.Set(ns.Labels)
	if _, ok := nsLabels[corev1.LabelMetadataName]; !ok {
		nsLabels = labels.Merge(nsLabels, labels.Set{corev1.LabelMetadataName: ns.Name})
	}
	for _, s := range []struct {
		sel *metav1.LabelSelector
		set labels.Set
	}{{m.NamespaceSelector, nsLabels}, {m.ObjectSelector, labels.Set(pod.Labels)}} {
		if s.sel == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(s.sel)
		if err != nil || !sel.Matches(s.set) {
			return false
		}
	}
	return slices.ContainsFunc(m.ResourceRules, func(r admissionregistrationv1.NamedRuleWithOperations) bool {
		return slices.Contains(r.Resources, "pods")
	})
}
