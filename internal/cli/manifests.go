package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/manifests"
	"regcred.dev/regcred/internal/mirror"
)

func newManifestsCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifests",
		Short: "Transform Kubernetes YAML offline: inject imagePullSecrets, rewrite images to mirrors, list images",
		Long: `Transform a multi-document YAML stream read from files, directories (*.yaml,
*.yml, recursively) or standard input, and write it to standard output.

Workloads are Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
ReplicationController, Job, CronJob and PodTemplate, also inside a v1 List.
Other kinds and unknown fields pass through untouched; documents regcred does
not change are written back byte for byte, changed ones keep their comments
and key order. A stream that does not parse is an error naming the document
and line, and nothing is written.

As a Helm 3 post-renderer:
  helm install shop ./chart --post-renderer regcred \
    --post-renderer-args manifests --post-renderer-args inject \
    --post-renderer-args --secret=regcred-harbor=harbor.example.com

As a Helm 4 post-renderer plugin (plugins/regcred in the regcred sources):
  helm plugin install ./plugins/regcred
  helm install shop ./chart --post-renderer regcred \
    --post-renderer-args --secret=regcred-harbor=harbor.example.com

With kustomize, render and pipe:
  kustomize build overlays/prod | regcred manifests inject --from-cluster | kubectl apply -f -`,
	}
	cmd.AddCommand(newManifestsInjectCommand(s), newManifestsRewriteCommand(s), newManifestsImagesCommand(s))
	return cmd
}

// mirrorFlags are the rule sources of rewrite (and of inject, which
// rewrites first like the webhook).
type mirrorFlags struct {
	mirrors     []string
	mirrorFiles []string
}

func (m *mirrorFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&m.mirrors, "mirror", nil, "a mirror rule SOURCE=MIRROR, e.g. docker.io=harbor.internal/dockerhub (repeatable)")
	fs.StringArrayVar(&m.mirrorFiles, "mirrors", nil, "a YAML file of ClusterImageMirror objects (repeatable)")
}

// decodeNamespaces adds the Namespace objects of the --mirrors files (their
// labels decide where a ClusterImageMirror with a namespaceSelector acts).
func (m *mirrorFlags) decodeNamespaces(objs *manifests.CredentialObjects) error {
	for _, f := range m.mirrorFiles {
		docs, err := readStreamFile(f)
		if err != nil {
			return err
		}
		if err := objs.DecodeNamespaces(docs); err != nil {
			return usageErrorf("%s: %v", f, err)
		}
	}
	return nil
}

// rules gathers the mirror rules and says which apply in a namespace, as
// the webhook picks them: --mirror rules in every namespace, each
// ClusterImageMirror where its namespaceSelector selects, merged with the
// catalogue the webhook reads. namespaces gives the lookup of a
// namespace's labels; it is asked only when a ClusterImageMirror has a
// namespaceSelector. It returns nil when there is no rule at all.
func (m *mirrorFlags) rules(ctx context.Context, fromCluster func() (client.Reader, error), namespaces func() (func(string) *corev1.Namespace, error)) (func(string) *mirror.Rules, error) {
	var objs []v1alpha1.ClusterImageMirror
	flagRules := v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "--mirror"}}
	for _, spec := range m.mirrors {
		src, dst, ok := strings.Cut(spec, "=")
		if !ok || src == "" || dst == "" {
			return nil, usageErrorf("--mirror %q: use SOURCE=MIRROR", spec)
		}
		flagRules.Spec.Mirrors = append(flagRules.Spec.Mirrors, v1alpha1.MirrorRule{Source: src, Mirror: dst})
	}
	if len(flagRules.Spec.Mirrors) > 0 {
		objs = append(objs, flagRules)
	}
	for _, f := range m.mirrorFiles {
		docs, err := readStreamFile(f)
		if err != nil {
			return nil, err
		}
		if err := manifests.DecodeKind(docs, "ClusterImageMirror", &objs); err != nil {
			return nil, usageErrorf("%s: %v", f, err)
		}
	}
	if fromCluster != nil {
		r, err := fromCluster()
		if err != nil {
			return nil, err
		}
		var list v1alpha1.ClusterImageMirrorList
		if err := r.List(ctx, &list); err != nil {
			return nil, fmt.Errorf("list ClusterImageMirrors: %w", err)
		}
		objs = append(objs, list.Items...)
	}
	if len(objs) == 0 {
		return nil, nil
	}
	cat := credential.NewCatalogue("")
	seen := map[string]bool{}
	for i := range objs {
		if seen[objs[i].Name] {
			return nil, usageErrorf("ClusterImageMirror %s is given twice", objs[i].Name)
		}
		seen[objs[i].Name] = true
		cat.Put(&objs[i])
	}
	if problems := cat.Problems(); len(problems) > 0 {
		return nil, usageErrorf("%s", strings.Join(problems, "; "))
	}
	namespace := func(name string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelMetadataName: name}}}
	}
	if slices.ContainsFunc(objs, func(o v1alpha1.ClusterImageMirror) bool { return o.Spec.NamespaceSelector != nil }) {
		lookup, err := namespaces()
		if err != nil {
			return nil, err
		}
		namespace = lookup
	}
	return func(ns string) *mirror.Rules {
		_, rules := cat.Mirrors(namespace(ns))
		return rules
	}, nil
}

// clusterReader connects lazily for --from-cluster.
func clusterReader(k *kubeFlags) func() (client.Reader, error) {
	return func() (client.Reader, error) {
		cfg, err := k.restConfig()
		if err != nil {
			return nil, err
		}
		scheme, err := credential.Scheme()
		if err != nil {
			return nil, err
		}
		return client.New(cfg, client.Options{Scheme: scheme})
	}
}

// readInputs reads the named files and directories, or stdin when none
// (or "-") is given, as one stream.
func readInputs(in io.Reader, args []string) ([]*manifests.Document, error) {
	if len(args) == 0 || (len(args) == 1 && args[0] == "-") {
		return manifests.SplitStream(in)
	}
	var files []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		var found []string
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	byFile := map[string][]*manifests.Document{}
	for _, f := range files {
		docs, err := readStreamFile(f)
		if err != nil {
			return nil, err
		}
		byFile[f] = docs
	}
	return manifests.Concat(byFile, files), nil
}

// readStreamFile splits a file into documents, parsed later one at a time.
func readStreamFile(path string) ([]*manifests.Document, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	docs, err := manifests.SplitStream(bytes.NewReader(b))
	if err != nil {
		return nil, usageErrorf("%s: %v", path, err)
	}
	for _, d := range docs {
		d.Source = path
	}
	return docs, nil
}

func printStats(w io.Writer, stats *manifests.Stats) {
	for _, warn := range stats.Warnings {
		fmt.Fprintf(w, "Warning: %s (left as is)\n", warn)
	}
}
