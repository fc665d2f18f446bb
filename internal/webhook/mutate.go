package webhook

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/keyring"
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
	Injected []*credRule
	// Errors are images that could not be parsed; they are left alone.
	Errors []string
}

// Changed reports whether the Pod was modified.
func (d *Decision) Changed() bool { return len(d.Rewritten) > 0 || len(d.Injected) > 0 }

// mutate rewrites the Pod's images by the mirror rules and adds the pull
// Secrets of the credentials that match them, in place. It is a pure
// function of its inputs: no I/O. The caller records the decision with
// annotate once it is final (Secrets that cannot be made are dropped).
func mutate(pod *corev1.Pod, ns *corev1.Namespace, snap *Snapshot) *Decision {
	d := &Decision{}
	if pod.Labels[LabelInject] == "false" {
		return d
	}
	rulesKey, rules := snap.rulesFor(ns)
	var targets []*resolvedImage
	// key names the container, or the image volume (VolumeKey).
	visit := func(key, image string, set func(string)) {
		r := snap.images.resolve(rulesKey, rules, image)
		if r.err != "" {
			what := "container " + key
			if name, ok := strings.CutPrefix(key, VolumeKey("")); ok {
				what = "image volume " + name
			}
			d.Errors = append(d.Errors, fmt.Sprintf("%s: %s", what, r.err))
			return
		}
		if r.rewritten != "" {
			if d.Rewritten == nil {
				d.Rewritten = map[string]string{}
			}
			d.Rewritten[key] = image
			set(r.rewritten)
		}
		if !slices.Contains(targets, r) {
			targets = append(targets, r)
		}
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		visit(c.Name, c.Image, func(s string) { c.Image = s })
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		visit(c.Name, c.Image, func(s string) { c.Image = s })
	}
	for i := range pod.Spec.EphemeralContainers {
		c := &pod.Spec.EphemeralContainers[i]
		visit(c.Name, c.Image, func(s string) { c.Image = s })
	}
	// The kubelet pulls image volumes with the Pod's pull Secrets too.
	for i := range pod.Spec.Volumes {
		if v := pod.Spec.Volumes[i].Image; v != nil {
			visit(VolumeKey(pod.Spec.Volumes[i].Name), v.Reference, func(s string) { v.Reference = s })
		}
	}

	present := map[string]bool{}
	for _, ref := range pod.Spec.ImagePullSecrets {
		present[ref.Name] = true
	}
	for _, c := range snap.credentialsFor(ns) {
		matched := false
		for _, t := range targets {
			if c.matcher.Matches(t.target) {
				matched = true
				break
			}
		}
		if !matched || present[c.SecretName()] {
			continue
		}
		present[c.SecretName()] = true
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: c.SecretName()})
		d.Injected = append(d.Injected, c)
	}
	return d
}

// VolumeKey names an image volume in AnnotationRewritten and in messages,
// apart from containers of the same name.
func VolumeKey(name string) string { return "volume/" + name }

// drop takes a credential's Secret back out of the Pod, when it could not
// be made to exist.
func (d *Decision) drop(pod *corev1.Pod, c *credRule) {
	pod.Spec.ImagePullSecrets = slices.DeleteFunc(pod.Spec.ImagePullSecrets, func(r corev1.LocalObjectReference) bool {
		return r.Name == c.SecretName()
	})
	d.Injected = slices.DeleteFunc(d.Injected, func(x *credRule) bool { return x == c })
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
			names[c.display()] = true
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

// resolvedImage is an image after the mirror rules, parsed for matching.
type resolvedImage struct {
	rewritten string // empty when no rule applied
	target    keyring.Target
	err       string
}

// imageCache remembers resolved images for the life of a snapshot: the
// Pods of one workload repeat the same images, and parsing a reference is
// the costliest step of a decision. It stops growing at maxCachedImages.
type imageCache struct {
	m    sync.Map // rulesKey + "\x00" + image -> *resolvedImage
	size atomic.Int64
}

const maxCachedImages = 10000

func (c *imageCache) resolve(rulesKey string, rules *mirror.Rules, image string) *resolvedImage {
	key := rulesKey + "\x00" + image
	if v, ok := c.m.Load(key); ok {
		return v.(*resolvedImage)
	}
	r := &resolvedImage{}
	named, err := keyring.ParseImage(image)
	if err != nil {
		r.err = err.Error()
	} else {
		if rules != nil {
			rewritten, _, ok, err := rules.RewriteNamed(named)
			switch {
			case err != nil:
				r.err = err.Error()
			case ok:
				r.rewritten = rewritten.String()
				named = rewritten
			}
		}
		if r.err == "" {
			r.target = keyring.ParseTarget(named.Name())
		}
	}
	if c.size.Load() < maxCachedImages {
		if _, loaded := c.m.LoadOrStore(key, r); !loaded {
			c.size.Add(1)
		}
	}
	return r
}

// rulesCache remembers compiled merged rule sets.
type rulesCache struct {
	mu sync.Mutex
	m  map[string]*mirror.Rules
}

func (c *rulesCache) get(key string, rules []mirror.Rule) *mirror.Rules {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.m[key]; ok {
		return r
	}
	compiled, err := mirror.Compile(rules)
	if err != nil {
		// Each set compiled alone when the snapshot was built; a merge of
		// valid sets stays valid.
		return nil
	}
	if c.m == nil {
		c.m = map[string]*mirror.Rules{}
	}
	c.m[key] = compiled
	return compiled
}
