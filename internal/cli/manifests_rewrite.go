package cli

import (
	"github.com/spf13/cobra"

	"regcred.dev/regcred/internal/manifests"
)

func newManifestsRewriteCommand(s Streams) *cobra.Command {
	var (
		mirrors     mirrorFlags
		fromCluster bool
		kube        kubeFlags
		quiet       bool
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
objects) or --from-cluster.`,
		Example: `  regcred manifests rewrite --mirror docker.io=harbor.internal/dockerhub --mirror quay.io=harbor.internal/quay < app.yaml
  helm template shop ./chart | regcred manifests rewrite --from-cluster`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var fc = clusterReader(&kube)
			if !fromCluster {
				fc = nil
			}
			rules, err := mirrors.rules(cmd.Context(), fc)
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
			stats, err := manifests.TransformDocuments(docs, cmd.OutOrStdout(), manifests.Options{Rules: rules})
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
	kube.addFlags(f, false)
	return cmd
}
