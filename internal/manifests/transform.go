package manifests

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"sort"

	"sigs.k8s.io/kustomize/kyaml/yaml"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/mirror"
)

// Credential is a pull Secret name and the registry keys it is for.
type Credential struct {
	SecretName string
	Registries []string
	// Applies reports whether the credential acts in a workload's
	// namespace, as the webhook decides; nil: in every namespace.
	Applies func(namespace string) bool
	matcher *credential.Matcher
}

// injectable is a Credential for the image pipeline.
type injectable struct{ c *Credential }

func (i injectable) SecretName() string            { return i.c.SecretName }
func (i injectable) Matches(t keyring.Target) bool { return i.c.matcher.Matches(t) }

// Options say what to do to a stream.
type Options struct {
	// Rules rewrite images first, in every namespace (nil: no rewrite).
	Rules *mirror.Rules
	// Mirrors, when set, gives the rules of each namespace instead of
	// Rules (ClusterImageMirrors act where their namespaceSelector
	// selects).
	Mirrors func(namespace string) *mirror.Rules
	// Credentials are injected where an image (after rewriting) matches
	// and the credential acts in the workload's namespace.
	Credentials []Credential
	// Namespace is the namespace of workloads that name none (default
	// "default", as kubectl apply without -n).
	Namespace string
	// Skip reports whether the webhook would leave a workload's Pods
	// alone (its namespace is excluded, or it or its namespace opts out);
	// nil: none is skipped.
	Skip func(namespace string, podLabels map[string]string) bool
}

// Stats count what a run did.
type Stats struct {
	Documents int
	Workloads int
	Rewritten int
	Injected  int
	// Warnings are images that could not be parsed (left alone).
	Warnings []string
}

// Transform reads a stream, rewrites and injects, and writes it back. It
// writes nothing when the stream does not parse.
func Transform(r io.Reader, w io.Writer, opts Options) (*Stats, error) {
	docs, err := SplitStream(r)
	if err != nil {
		return nil, err
	}
	return TransformDocuments(docs, w, opts)
}

// TransformDocuments processes documents one at a time, parsing,
// transforming and rendering each before the next, into a buffer written
// to w only when every document succeeded.
func TransformDocuments(docs []*Document, w io.Writer, opts Options) (*Stats, error) {
	if err := opts.compile(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	stats := &Stats{Documents: len(docs)}
	for i, d := range docs {
		if err := applyOne(d, opts, stats); err != nil {
			return nil, err
		}
		if err := writeDocument(bw, d, i == len(docs)-1); err != nil {
			return nil, err
		}
		d.node, d.parsed = nil, false
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	_, err := w.Write(buf.Bytes())
	return stats, err
}

func (opts Options) compile() error {
	for i := range opts.Credentials {
		c := &opts.Credentials[i]
		if c.matcher == nil {
			m, bad := credential.NewMatcher(c.SecretName, c.Registries)
			if len(bad) > 0 {
				return fmt.Errorf("credential %s: invalid registry keys %v", c.SecretName, bad)
			}
			c.matcher = m
		}
	}
	return nil
}

func applyOne(d *Document, opts Options, stats *Stats) error {
	if err := d.ensureParsed(); err != nil {
		return err
	}
	if d.node == nil {
		return nil
	}
	ws, err := workloadsOf(d.node)
	if err != nil {
		return fmt.Errorf("%s: %w", d.where(d.Line), err)
	}
	for _, w := range ws {
		stats.Workloads++
		namespace := cmp.Or(w.namespace, opts.Namespace, "default")
		if opts.Skip != nil && opts.Skip(namespace, w.labels) {
			continue
		}
		changed, err := transformPodSpec(w.spec, namespace, opts, stats, d)
		if err != nil {
			return err
		}
		if changed {
			d.changed = true
		}
	}
	return nil
}

// transformPodSpec runs the image pipeline every front end shares
// (credential.PlanImages) on one Pod template, in place in the YAML.
func transformPodSpec(spec *yaml.RNode, namespace string, opts Options, stats *Stats, d *Document) (bool, error) {
	nodes := imageNodes(spec)
	if len(nodes) == 0 {
		return false, nil
	}
	images := make([]credential.Image, len(nodes))
	for i, n := range nodes {
		images[i] = credential.Image{Ref: n.Value}
	}
	var list *yaml.Node
	var present []string
	if f := spec.Field("imagePullSecrets"); f != nil && f.Value.YNode().Kind == yaml.SequenceNode {
		list = f.Value.YNode()
		for _, e := range list.Content {
			for i := 0; i+1 < len(e.Content); i += 2 {
				if e.Content[i].Value == "name" {
					present = append(present, e.Content[i+1].Value)
				}
			}
		}
	}
	creds := make([]credential.Injectable, 0, len(opts.Credentials))
	for i := range opts.Credentials {
		if c := &opts.Credentials[i]; c.Applies == nil || c.Applies(namespace) {
			creds = append(creds, injectable{c})
		}
	}
	rules := opts.Rules
	if opts.Mirrors != nil {
		rules = opts.Mirrors(namespace)
	}
	plan := credential.PlanImages(images, present, creds, func(ref string) *credential.Resolved {
		return credential.Resolve(rules, ref)
	})
	changed := false
	for i, n := range nodes {
		if plan.Errs[i] != "" {
			stats.Warnings = append(stats.Warnings, fmt.Sprintf("%s: %s", d.where(n.Line+d.Line-1), plan.Errs[i]))
		}
		if plan.Rewrites[i] != "" {
			n.Value = plan.Rewrites[i]
			stats.Rewritten++
			changed = true
		}
	}
	for _, c := range plan.Add {
		if list == nil {
			field, err := spec.Pipe(yaml.LookupCreate(yaml.SequenceNode, "imagePullSecrets"))
			if err != nil {
				return false, err
			}
			list = field.YNode()
			list.Style = 0
		}
		entry := yaml.NewMapRNode(&map[string]string{"name": c.SecretName()})
		list.Content = append(list.Content, entry.YNode())
		stats.Injected++
		changed = true
	}
	return changed, nil
}

// Images lists the unique normalized images of the workloads in docs,
// sorted.
func Images(docs []*Document) ([]string, []string, error) {
	seen := map[string]bool{}
	var warnings []string
	for _, d := range docs {
		node, err := d.Parse()
		if err != nil {
			return nil, nil, err
		}
		if node == nil {
			continue
		}
		specs, err := podSpecs(node)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", d.where(d.Line), err)
		}
		for _, spec := range specs {
			for _, img := range imageNodes(spec) {
				n, err := keyring.NormalizeImage(img.Value)
				if err != nil {
					warnings = append(warnings, fmt.Sprintf("%s: %v", d.where(img.Line+d.Line-1), err))
					continue
				}
				seen[n] = true
			}
		}
		d.release()
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, warnings, nil
}
