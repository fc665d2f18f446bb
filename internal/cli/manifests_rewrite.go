package cli

import (
	"cmp"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"regcred.dev/regcred/internal/manifests"
)

func newManifestsRewriteCommand(s Streams) *cobra.Command {
	var (
		mirrors     mirrorFlags
		fromCluster bool
		kube        kubeFlags
		quiet       bool
		namespace   string
	)
	cmd := &cobra.Command{
		Use:   "rewrite [FILE|DIR|-]...",
		Short: "Point workload images at mirrors, by the same rules as ClusterImageMirror",
		Long: `Rewrite the images of every workload by mirror rules, with the semantics of
the admission webhook's ClusterImageMirror: a rule's source is a registry
host with an optional path prefix (docker.io, ghcr.io/acme), matched on path
segments; the most specific source wins; tags and digests are kept, and an
image with neither gets :latest.

Rules come from --mirror SOURCE=MIRROR, --mirrors FILE (ClusterImageMirror
objects) or --from-cluster. A --mirror rule applies in every namespace; a
ClusterImageMirror with a namespaceSelector only in the namespaces it
selects, as in the webhook. A workload's namespace is its
metadata.namespace, or --namespace ($HELM_NAMESPACE as a Helm plugin, else
"default"); its labels come from the cluster with --from-cluster, from
Namespace objects in the --mirrors files otherwise (a namespace not given
there has only its kubernetes.io/metadata.name label).`,
		Example: `  regcred manifests rewrite --mirror docker.io=harbor.internal/dockerhub --mirror quay.io=harbor.internal/quay < app.yaml
  helm template shop ./chart | regcred manifests rewrite --from-cluster`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var fc = clusterReader(&kube)
			if !fromCluster {
				fc = nil
			}
			// Namespace labels, only if a mirror selects by them: listing
			// namespaces needs a grant a CI identity may lack.
			namespaces := func() (func(string) *corev1.Namespace, error) {
				var objs manifests.CredentialObjects
				if err := mirrors.decodeNamespaces(&objs); err != nil {
					return nil, err
				}
				if fc != nil {
					r, err := fc()
					if err != nil {
						return nil, err
					}
					var nl corev1.NamespaceList
					if err := r.List(cmd.Context(), &nl); err != nil {
						return nil, fmt.Errorf("list namespaces (a ClusterImageMirror's namespaceSelector reads their labels): %w", err)
					}
					objs.Namespaces = append(objs.Namespaces, nl.Items...)
				}
				return objs.Namespace(), nil
			}
			rules, err := mirrors.rules(cmd.Context(), fc, namespaces)
			if err != nil {
				return err
			}
			if rules == nil {
				return usageErrorf("no mirror rules: give --mirror, --mirrors or --from-cluster")
			}
			docs, err := readInputs(s.In, args)
			if err != nil {
				return &usageError{err}
			}
			stats, err := manifests.TransformDocuments(docs, cmd.OutOrStdout(), manifests.Options{Mirrors: rules,
				Namespace: cmp.Or(namespace, os.Getenv("HELM_NAMESPACE"), "default")})
			if err != nil {
				return &usageError{err}
			}
			if !quiet {
				printStats(cmd.ErrOrStderr(), stats)
			}
			return nil
		},
	}
	f := cmd.Flags()
	mirrors.addFlags(f)
	f.BoolVar(&fromCluster, "from-cluster", false, "use the ClusterImageMirrors of the current cluster")
	f.BoolVarP(&quiet, "quiet", "q", false, "do not print warnings")
	f.StringVarP(&namespace, "namespace", "n", "", "the namespace of workloads that name none (default: $HELM_NAMESPACE, else \"default\")")
	kube.addFlags(f, false)
	return cmd
}
