// Package manifests transforms multi-document Kubernetes YAML streams
// offline: add imagePullSecrets to the Pod templates of workloads whose
// images match a credential, rewrite images by mirror rules, and list
// images. It is what `regcred manifests` and the Helm post-renderer run.
//
// Documents regcred does not change are written back byte for byte;
// changed ones keep their comments, key order and sequence indentation
// (sigs.k8s.io/kustomize/kyaml). No document is ever dropped: a stream that
// does not parse is an error naming the document and the line.
package manifests

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// Document is one YAML document of a stream.
type Document struct {
	// Index is the 1-based position in the stream.
	Index int
	// Line is the 1-based line of the stream where the document starts.
	Line int
	// Source names the file the document came from, for messages.
	Source string
	// separator is the "---" line before the document, as written.
	separator string
	raw       string
	node      *yaml.RNode
	parsed    bool
	changed   bool
}

// Raw is the document's text as read.
func (d *Document) Raw() string { return d.raw }

// Node is the parsed object, or nil for an empty or non-object document
// (or one that does not parse: see Parse).
func (d *Document) Node() *yaml.RNode {
	_ = d.ensureParsed()
	return d.node
}

// Parse parses the document if it was not yet, and returns its object.
func (d *Document) Parse() (*yaml.RNode, error) {
	if err := d.ensureParsed(); err != nil {
		return nil, err
	}
	return d.node, nil
}

func (d *Document) ensureParsed() error {
	if d.parsed {
		return nil
	}
	if err := d.parse(); err != nil {
		return err
	}
	d.parsed = true
	return nil
}

// release drops the parsed form of an unchanged document, to bound memory.
func (d *Document) release() {
	if !d.changed {
		d.node, d.parsed = nil, false
	}
}

// where names a line of the document for messages.
func (d *Document) where(line int) string {
	if d.Source != "" {
		return fmt.Sprintf("%s: document %d (line %d)", d.Source, d.Index, line)
	}
	return fmt.Sprintf("document %d (line %d of the stream)", d.Index, line)
}

// Concat joins the documents of several files into one stream, with a
// separator between files; each document keeps its file and position for
// messages.
func Concat(files map[string][]*Document, order []string) []*Document {
	var out []*Document
	for _, f := range order {
		for _, d := range files[f] {
			d.Source = f
			if len(out) > 0 && d.separator == "" {
				d.separator = "---\n"
			}
			out = append(out, d)
		}
	}
	return out
}

var separatorLine = regexp.MustCompile(`^---(\s.*)?$`)

// ReadStream splits a stream into documents and parses each. Empty
// documents (nothing or only comments) are kept as they are.
func ReadStream(r io.Reader) ([]*Document, error) {
	docs, err := SplitStream(r)
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		if err := d.ensureParsed(); err != nil {
			return nil, err
		}
	}
	return docs, nil
}

// SplitStream splits a stream into documents without parsing them; they
// are parsed one at a time as they are processed, so that a large stream
// never has all its documents parsed in memory at once.
func SplitStream(r io.Reader) ([]*Document, error) {
	br := bufio.NewReader(r)
	var docs []*Document
	cur := &Document{Index: 1, Line: 1}
	var b strings.Builder
	line := 0
	flush := func() {
		cur.raw = b.String()
		docs = append(docs, cur)
		b.Reset()
	}
	for {
		text, err := br.ReadString('\n')
		if text != "" {
			line++
			if separatorLine.MatchString(strings.TrimRight(text, "\r\n")) {
				if line > 1 || b.Len() > 0 {
					flush()
					cur = &Document{Index: len(docs) + 1, Line: line + 1, separator: text}
				} else {
					cur.separator = text
					cur.Line = line + 1
				}
			} else {
				b.WriteString(text)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	flush()
	return docs, nil
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

func (d *Document) parse() error {
	if strings.TrimSpace(stripComments(d.raw)) == "" {
		return nil
	}
	node, err := yaml.Parse(d.raw)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		line := d.Line
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			n, _ := strconv.Atoi(m[1])
			line = d.Line + n - 1
			msg = strings.TrimSpace(yamlLine.ReplaceAllString(msg, ""))
			msg = strings.TrimPrefix(msg, ": ")
		}
		return fmt.Errorf("%s: invalid YAML: %s", d.where(line), msg)
	}
	if node.YNode().Kind != yaml.MappingNode {
		// Not an object (a bare scalar or list): pass it through.
		return nil
	}
	d.node = node
	return nil
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") || t == "..." {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// WriteStream writes the documents back: unchanged ones exactly as read.
func WriteStream(w io.Writer, docs []*Document) error {
	bw := bufio.NewWriter(w)
	for i, d := range docs {
		if err := writeDocument(bw, d, i == len(docs)-1); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func writeDocument(bw *bufio.Writer, d *Document, last bool) error {
	{
		if _, err := bw.WriteString(d.separator); err != nil {
			return err
		}
		text := d.raw
		if d.changed {
			out, err := yaml.MarshalWithOptions(d.node.Document(), &yaml.EncoderOptions{
				SeqIndent: yaml.SequenceIndentStyle(yaml.DeriveSeqIndentStyle(d.raw)),
			})
			if err != nil {
				return fmt.Errorf("document %d: %w", d.Index, err)
			}
			text = string(out)
			// A document whose last line had no newline keeps that.
			if !strings.HasSuffix(d.raw, "\n") {
				text = strings.TrimSuffix(text, "\n")
			}
		}
		if text != "" && !strings.HasSuffix(text, "\n") && !last {
			text += "\n"
		}
		if _, err := bw.WriteString(text); err != nil {
			return err
		}
	}
	return nil
}

// kindOf reads apiVersion and kind without failing on odd documents.
func kindOf(rn *yaml.RNode) (group, kind string) {
	apiVersion := rn.GetApiVersion()
	if i := strings.LastIndex(apiVersion, "/"); i >= 0 {
		group = apiVersion[:i]
	}
	return group, rn.GetKind()
}

// workload is one Pod template of a document: its spec, the namespace of
// the object that holds it ("" when it names none) and the labels its
// Pods get.
type workload struct {
	spec      *yaml.RNode
	namespace string
	labels    map[string]string
}

// podSpecs are the Pod specs of a document's workloads.
func podSpecs(rn *yaml.RNode) ([]*yaml.RNode, error) {
	ws, err := workloadsOf(rn)
	if err != nil {
		return nil, err
	}
	out := make([]*yaml.RNode, len(ws))
	for i, w := range ws {
		out[i] = w.spec
	}
	return out, nil
}

// workloadsOf lists a document's workloads, each item of a List with its
// own namespace.
func workloadsOf(rn *yaml.RNode) ([]workload, error) {
	group, kind := kindOf(rn)
	var path []string
	switch {
	case kind == "List" && group == "":
		items, err := rn.Pipe(yaml.Lookup("items"))
		if err != nil || items == nil {
			return nil, err
		}
		elems, err := items.Elements()
		if err != nil {
			return nil, err
		}
		var out []workload
		for _, e := range elems {
			if e.YNode().Kind != yaml.MappingNode {
				continue
			}
			ws, err := workloadsOf(e)
			if err != nil {
				return nil, err
			}
			out = append(out, ws...)
		}
		return out, nil
	case kind == "Pod" && group == "":
		path = []string{"spec"}
	case kind == "PodTemplate" && group == "":
		path = []string{"template", "spec"}
	case kind == "ReplicationController" && group == "":
		path = []string{"spec", "template", "spec"}
	case (kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" || kind == "ReplicaSet") && (group == "apps" || group == "extensions"):
		path = []string{"spec", "template", "spec"}
	case kind == "Job" && group == "batch":
		path = []string{"spec", "template", "spec"}
	case kind == "CronJob" && group == "batch":
		path = []string{"spec", "jobTemplate", "spec", "template", "spec"}
	default:
		return nil, nil
	}
	spec, err := rn.Pipe(yaml.Lookup(path...))
	if err != nil || spec == nil || spec.YNode().Kind != yaml.MappingNode {
		return nil, err
	}
	// The Pods' labels: the object's own for a Pod, its template's
	// otherwise.
	template := rn
	if len(path) > 1 {
		if template, err = rn.Pipe(yaml.Lookup(path[:len(path)-1]...)); err != nil || template == nil {
			template = rn
		}
	}
	labels := map[string]string{}
	if m, err := template.Pipe(yaml.Lookup("metadata", "labels")); err == nil && m != nil && m.YNode().Kind == yaml.MappingNode {
		for i := 0; i+1 < len(m.YNode().Content); i += 2 {
			labels[m.YNode().Content[i].Value] = m.YNode().Content[i+1].Value
		}
	}
	return []workload{{spec: spec, namespace: rn.GetNamespace(), labels: labels}}, nil
}

// imageNodes returns the scalar nodes of every container image of a Pod
// spec: init containers, containers, ephemeral containers.
func imageNodes(spec *yaml.RNode) []*yaml.Node {
	var out []*yaml.Node
	for _, field := range []string{"initContainers", "containers", "ephemeralContainers"} {
		for _, c := range mappings(spec, field) {
			if v := scalar(c, "image"); v != nil {
				out = append(out, v)
			}
		}
	}
	// Image volumes (volumes[].image.reference) are pulled by the kubelet
	// with the Pod's pull Secrets, like containers.
	for _, v := range mappings(spec, "volumes") {
		if img := mapping(v, "image"); img != nil {
			if ref := scalar(img, "reference"); ref != nil {
				out = append(out, ref)
			}
		}
	}
	return out
}

// mappings are the mapping entries of the sequence spec.field.
func mappings(spec *yaml.RNode, field string) []*yaml.Node {
	list := spec.Field(field)
	if list == nil || list.Value.YNode().Kind != yaml.SequenceNode {
		return nil
	}
	var out []*yaml.Node
	for _, e := range list.Value.YNode().Content {
		if e.Kind == yaml.MappingNode {
			out = append(out, e)
		}
	}
	return out
}

// scalar is the scalar value of key in mapping m, or nil.
func scalar(m *yaml.Node, key string) *yaml.Node {
	if v := value(m, key); v != nil && v.Kind == yaml.ScalarNode {
		return v
	}
	return nil
}

// mapping is the mapping value of key in mapping m, or nil.
func mapping(m *yaml.Node, key string) *yaml.Node {
	if v := value(m, key); v != nil && v.Kind == yaml.MappingNode {
		return v
	}
	return nil
}

func value(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
