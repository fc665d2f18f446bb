// Package webhook is regcred's Pod admission webhook: it rewrites images by
// ClusterImageMirror rules, adds exactly the pull Secrets whose registries
// match the Pod's images, and makes sure those Secrets exist before the Pod
// is admitted. It manages its own TLS and webhook configuration.
package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/logkeys"
)

// Path is where the Pod mutator is served.
const Path = "/mutate-v1-pod"

// Handler is the Pod mutator.
type Handler struct {
	// Reader reads from the informer caches.
	Reader client.Reader
	// APIReader reads from the API server, for objects the cache has not
	// seen yet (a namespace created a moment ago).
	APIReader client.Reader
	// Catalogue is every credential and mirror, compiled (fed from the
	// informer caches by cachefeed).
	Catalogue *credential.Catalogue
	// Secrets creates missing managed Secrets.
	Secrets SecretEnsurer
	Log     logr.Logger

	images atomic.Pointer[imageCache]
	logged atomic.Uint64
}

var _ admission.Handler = (*Handler)(nil)

// SecretEnsurer makes a credential's managed Secret exist in a namespace
// before a Pod that lists it is admitted (the namespace controller does).
type SecretEnsurer interface {
	EnsureSecret(ctx context.Context, c *credential.Entry, namespace string) error
}

// Handle implements admission.Handler. It never panics and never blocks a
// Pod for its own failures: those are answered with an error, which the
// webhook's failurePolicy (Ignore by default) turns into admission.
func (h *Handler) Handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	defer func() {
		if r := recover(); r != nil {
			h.Log.Error(fmt.Errorf("%v", r), "panic in the Pod mutator", logkeys.UID, req.UID)
			resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("internal error"))
		}
	}()
	return h.handle(ctx, req)
}

// handle is Handle without the recovery, so that tests and fuzzers see a
// panic as the bug it is.
func (h *Handler) handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create || req.Kind.Kind != "Pod" || req.Kind.Group != "" {
		return admission.Allowed("regcred acts on Pod creation only")
	}
	if len(req.Object.Raw) == 0 {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("no object in the request"))
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode Pod: %w", err))
	}
	namespace := req.Namespace
	if namespace == "" {
		namespace = pod.Namespace
	}
	if namespace == "" {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("the request names no namespace"))
	}
	ns := &corev1.Namespace{}
	if err := h.Reader.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		if !apierrors.IsNotFound(err) || h.APIReader == nil {
			return admission.Errored(http.StatusInternalServerError, fmt.Errorf("read namespace %s: %w", namespace, err))
		}
		// The namespace is newer than the cache.
		if err := h.APIReader.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
			return admission.Errored(http.StatusInternalServerError, fmt.Errorf("read namespace %s: %w", namespace, err))
		}
	}
	if ns.Labels[LabelInject] == "false" {
		return admission.Allowed("namespace opted out")
	}
	snap, err := h.snapshot(ctx)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}

	mutated := pod.DeepCopy()
	d := mutate(mutated, ns, snap)
	var warnings []string
	for _, e := range d.Errors {
		warnings = append(warnings, "regcred: "+e)
	}
	dryRun := req.DryRun != nil && *req.DryRun
	if !dryRun {
		for _, c := range append([]*credential.Entry(nil), d.Injected...) {
			if err := h.Secrets.EnsureSecret(ctx, c, namespace); err != nil {
				d.drop(mutated, c)
				warnings = append(warnings, fmt.Sprintf("regcred: pull Secret %s of %s not added: %v", c.SecretName(), c.Key.Display(), err))
				h.Log.Info("pull Secret not added", logkeys.Namespace, namespace, logkeys.Credential, c.Key.Display(), logkeys.Reason, err.Error())
			}
		}
	}
	annotate(mutated, d)
	if !d.Changed() {
		return admission.Allowed("nothing to change").WithWarnings(warnings...)
	}
	return admission.Patched("", patchFor(pod, mutated)...).WithWarnings(warnings...)
}

// patchFor writes the JSON patch from original to mutated directly, for
// the fields the mutator changes (images, imagePullSecrets, annotations):
// cheaper than diffing two serialized Pods, and always in the same order.
func patchFor(original, mutated *corev1.Pod) []jsonpatch.JsonPatchOperation {
	var ops []jsonpatch.JsonPatchOperation
	if len(original.Annotations) == 0 && len(mutated.Annotations) > 0 {
		ops = append(ops, jsonpatch.NewOperation("add", "/metadata/annotations", mutated.Annotations))
	} else {
		keys := make([]string, 0, len(mutated.Annotations))
		for k, v := range mutated.Annotations {
			if old, ok := original.Annotations[k]; !ok || old != v {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			ops = append(ops, jsonpatch.NewOperation("add", "/metadata/annotations/"+escapePointer(k), mutated.Annotations[k]))
		}
	}
	images := func(section string, before, after []corev1.Container) {
		for i := range after {
			if i < len(before) && before[i].Image != after[i].Image {
				ops = append(ops, jsonpatch.NewOperation("replace", fmt.Sprintf("/spec/%s/%d/image", section, i), after[i].Image))
			}
		}
	}
	images("initContainers", original.Spec.InitContainers, mutated.Spec.InitContainers)
	images("containers", original.Spec.Containers, mutated.Spec.Containers)
	for i := range mutated.Spec.EphemeralContainers {
		if i < len(original.Spec.EphemeralContainers) && original.Spec.EphemeralContainers[i].Image != mutated.Spec.EphemeralContainers[i].Image {
			ops = append(ops, jsonpatch.NewOperation("replace", fmt.Sprintf("/spec/ephemeralContainers/%d/image", i), mutated.Spec.EphemeralContainers[i].Image))
		}
	}
	for i := range mutated.Spec.Volumes {
		before, after := original.Spec.Volumes[i].Image, mutated.Spec.Volumes[i].Image
		if before != nil && after != nil && before.Reference != after.Reference {
			ops = append(ops, jsonpatch.NewOperation("replace", fmt.Sprintf("/spec/volumes/%d/image/reference", i), after.Reference))
		}
	}
	if added := mutated.Spec.ImagePullSecrets[len(original.Spec.ImagePullSecrets):]; len(added) > 0 {
		if len(original.Spec.ImagePullSecrets) == 0 {
			ops = append(ops, jsonpatch.NewOperation("add", "/spec/imagePullSecrets", added))
		} else {
			for _, ref := range added {
				ops = append(ops, jsonpatch.NewOperation("add", "/spec/imagePullSecrets/-", ref))
			}
		}
	}
	return ops
}

// escapePointer escapes a JSON pointer segment (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
