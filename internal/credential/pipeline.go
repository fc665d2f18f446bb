package credential

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/mirror"
)

// The image pipeline, the same for the admission webhook (a Pod) and the
// offline manifest tools (a workload's Pod template in YAML): each image
// the kubelet pulls is parsed, rewritten by the mirror rules, and turned
// into the kubelet's lookup target; every credential whose registries
// match a target adds its pull Secret, unless the Pod lists it already.

// Image is one image the kubelet pulls for a Pod.
type Image struct {
	// Where names it in messages and in the webhook's annotation: the
	// container's name, or VolumeKey(name) for an image volume.
	Where string
	Ref   string
}

// VolumeKey names an image volume apart from a container of the same
// name.
func VolumeKey(name string) string { return "volume/" + name }

// PodImage is an Image of a Pod spec with the means to change it there.
type PodImage struct {
	Image
	ref *string
}

// Set changes the image in the Pod spec.
func (p PodImage) Set(ref string) { *p.ref = ref }

// PodImages lists the images the kubelet pulls for a Pod, in its order: init
// containers, containers, ephemeral containers, image volumes (pulled with
// the Pod's pull Secrets like containers).
func PodImages(spec *corev1.PodSpec) []PodImage {
	var out []PodImage
	add := func(where string, ref *string) {
		out = append(out, PodImage{Image: Image{Where: where, Ref: *ref}, ref: ref})
	}
	for i := range spec.InitContainers {
		add(spec.InitContainers[i].Name, &spec.InitContainers[i].Image)
	}
	for i := range spec.Containers {
		add(spec.Containers[i].Name, &spec.Containers[i].Image)
	}
	for i := range spec.EphemeralContainers {
		add(spec.EphemeralContainers[i].Name, &spec.EphemeralContainers[i].Image)
	}
	for i := range spec.Volumes {
		if v := spec.Volumes[i].Image; v != nil {
			add(VolumeKey(spec.Volumes[i].Name), &v.Reference)
		}
	}
	return out
}

// Resolved is an image after the mirror rules, parsed for matching.
type Resolved struct {
	// Rewritten is the image after a mirror rule, "" when none applied.
	Rewritten string
	Target    keyring.Target
	// Err says why the image cannot be parsed; it is then left alone.
	Err string
}

// Resolve parses image as the kubelet does and applies the mirror rules
// (nil: none).
func Resolve(rules *mirror.Rules, image string) *Resolved {
	r := &Resolved{}
	named, err := keyring.ParseImage(image)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	if rules != nil {
		rewritten, _, ok, err := rules.RewriteNamed(named)
		switch {
		case err != nil:
			r.Err = err.Error()
			return r
		case ok && rewritten.String() != image:
			r.Rewritten = rewritten.String()
			named = rewritten
		}
	}
	r.Target = keyring.ParseTarget(named.Name())
	return r
}

// Injectable is a credential as the pipeline sees it.
type Injectable interface {
	SecretName() string
	Matches(keyring.Target) bool
}

// Plan is what the pipeline decided for one Pod.
type Plan struct {
	// Rewrites holds, for each image given, its new reference, or "".
	Rewrites []string
	// Errs holds, for each image given, why it cannot be parsed (it is
	// left alone), or "".
	Errs []string
	// Add are the credentials whose pull Secrets the Pod gains, in the
	// order given.
	Add []Injectable
}

// Errors describe the images that could not be parsed, by container or
// image volume.
func (p *Plan) Errors(images []Image) []string {
	var out []string
	for i, e := range p.Errs {
		if e != "" {
			out = append(out, Describe(images[i].Where)+": "+e)
		}
	}
	return out
}

// Changed reports whether the plan changes the Pod.
func (p *Plan) Changed() bool {
	if len(p.Add) > 0 {
		return true
	}
	for _, r := range p.Rewrites {
		if r != "" {
			return true
		}
	}
	return false
}

// PlanImages runs the pipeline: resolve (Resolve, or a cache of it) each
// image, then add each credential that matches a resolved image and whose
// Secret the Pod does not list yet (present).
func PlanImages(images []Image, present []string, creds []Injectable, resolve func(ref string) *Resolved) *Plan {
	p := &Plan{Rewrites: make([]string, len(images)), Errs: make([]string, len(images))}
	targets := make([]keyring.Target, 0, len(images))
	for i, img := range images {
		r := resolve(img.Ref)
		if r.Err != "" {
			p.Errs[i] = r.Err
			continue
		}
		p.Rewrites[i] = r.Rewritten
		targets = append(targets, r.Target)
	}
	listed := make(map[string]bool, len(present))
	for _, name := range present {
		listed[name] = true
	}
	for _, c := range creds {
		if listed[c.SecretName()] {
			continue
		}
		for _, t := range targets {
			if c.Matches(t) {
				listed[c.SecretName()] = true
				p.Add = append(p.Add, c)
				break
			}
		}
	}
	return p
}

// Describe names an image's place for a person: "container NAME" or
// "image volume NAME".
func Describe(where string) string {
	if name, ok := strings.CutPrefix(where, VolumeKey("")); ok {
		return "image volume " + name
	}
	return "container " + where
}
