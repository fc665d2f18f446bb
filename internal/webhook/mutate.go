package webhook

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/mirror"
)

// Annotations the webhook writes on the Pods it changes, so a person can
// see why.
const (
	// AnnotationInjected lists the credentials whose pull Secrets the
	// webhook added: cluster credential names, and namespace/name for
	// RegistryCredentials.
	AnnotationInjected = "regcred.dev/injected"
	// AnnotationRewritten maps container names (and "volume/NAME" for
	// image volumes) to their images before the mirror rules rewrote them,
	// as JSON.
	AnnotationRewritten = "regcred.dev/rewritten"
	// LabelInject set to "false" on a namespace or a Pod opts it out.
	LabelInject = credential.LabelInject
)

// Decision is what the mutator decided for one Pod.
type Decision struct {
	// Rewritten maps container names, and "volume/NAME" for image volumes,
	// to original images.
	Rewritten map[string]string
	// Injected are the credentials whose Secrets were added.
	Injected []*credential.Entry
	// Errors are images that could not be parsed; they are left alone.
	Errors []string
}

// Changed reports whether the Pod was modified.
func (d *Decision) Changed() bool { return len(d.Rewritten) > 0 || len(d.Injected) > 0 }

// mutate rewrites the Pod's images by the mirror rules and adds the pull
// Secrets of the credentials that match them, in place, by the image
// pipeline every front end shares (credential.PlanImages). It is a pure
// function of its inputs: no I/O. The caller records the decision with
// annotate once it is final (Secrets that cannot be made are dropped).
func mutate(pod *corev1.Pod, ns *corev1.Namespace, snap *view) *Decision {
	d := &Decision{}
	if pod.Labels[LabelInject] == "false" {
		return d
	}
	rulesKey, rules := snap.cat.Mirrors(ns)
	podImages := credential.PodImages(&pod.Spec)
	images := make([]credential.Image, len(podImages))
	for i := range podImages {
		images[i] = podImages[i].Image
	}
	creds := injectable(snap.cat.Acting(ns))
	candidates := make([]credential.Injectable, len(creds))
	for i, c := range creds {
		candidates[i] = c
	}
	present := make([]string, len(pod.Spec.ImagePullSecrets))
	for i, ref := range pod.Spec.ImagePullSecrets {
		present[i] = ref.Name
	}
	plan := credential.PlanImages(images, present, candidates, func(ref string) *credential.Resolved {
		return snap.images.resolve(rulesKey, rules, ref)
	})
	for i, rewritten := range plan.Rewrites {
		if rewritten == "" {
			continue
		}
		if d.Rewritten == nil {
			d.Rewritten = map[string]string{}
		}
		d.Rewritten[images[i].Where] = images[i].Ref
		podImages[i].Set(rewritten)
	}
	d.Errors = plan.Errors(images)
	for _, c := range plan.Add {
		e := c.(*credential.Entry)
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: e.SecretName()})
		d.Injected = append(d.Injected, e)
	}
	return d
}

// drop takes a credential's Secret back out of the Pod, when it could not
// be made to exist.
func (d *Decision) drop(pod *corev1.Pod, c *credential.Entry) {
	pod.Spec.ImagePullSecrets = slices.DeleteFunc(pod.Spec.ImagePullSecrets, func(r corev1.LocalObjectReference) bool {
		return r.Name == c.SecretName()
	})
	d.Injected = slices.DeleteFunc(d.Injected, func(x *credential.Entry) bool { return x == c })
}

// annotate merges what was done into the Pod's annotations, keeping what an
// earlier invocation recorded.
func annotate(pod *corev1.Pod, d *Decision) {
	if !d.Changed() {
		return
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	if len(d.Injected) > 0 {
		names := map[string]bool{}
		for _, n := range strings.Split(pod.Annotations[AnnotationInjected], ",") {
			if n != "" {
				names[n] = true
			}
		}
		for _, c := range d.Injected {
			names[c.Key.Display()] = true
		}
		list := make([]string, 0, len(names))
		for n := range names {
			list = append(list, n)
		}
		sort.Strings(list)
		pod.Annotations[AnnotationInjected] = strings.Join(list, ",")
	}
	if len(d.Rewritten) > 0 {
		all := map[string]string{}
		_ = json.Unmarshal([]byte(pod.Annotations[AnnotationRewritten]), &all)
		if all == nil {
			all = map[string]string{}
		}
		for k, v := range d.Rewritten {
			if _, seen := all[k]; !seen {
				all[k] = v
			}
		}
		b, _ := json.Marshal(all)
		pod.Annotations[AnnotationRewritten] = string(b)
	}
}

// imageCache remembers resolved images for one generation of the mirror
// rules: the
// Pods of one workload repeat the same images, and parsing a reference is
// the costliest step of a decision. It stops growing at maxCachedImages.
type imageCache struct {
	generation uint64   // of the catalogue's mirrors
	m          sync.Map // rulesKey + "\x00" + image -> *credential.Resolved
	size       atomic.Int64
}

const (
	maxCachedImages   = 10000
	maxCachedImageLen = 1024
)

func (c *imageCache) resolve(rulesKey string, rules *mirror.Rules, image string) *credential.Resolved {
	key := rulesKey + "\x00" + image
	if v, ok := c.m.Load(key); ok {
		return v.(*credential.Resolved)
	}
	r := credential.Resolve(rules, image)
	// Only images that parse are kept: a tenant's garbage references
	// (of any length) must not fill the cache for the life of the mirror
	// rules; a valid one is short (the reference grammar bounds it).
	if r.Err == "" && len(image) <= maxCachedImageLen && c.size.Load() < maxCachedImages {
		if _, loaded := c.m.LoadOrStore(key, r); !loaded {
			c.size.Add(1)
		}
	}
	return r
}
