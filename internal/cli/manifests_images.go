package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"regcred.dev/regcred/internal/manifests"
)

func newManifestsImagesCommand(s Streams) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "images [FILE|DIR|-]...",
		Short: "List the unique images of the workloads in a stream, normalized",
		Long: `List the unique images of every workload in a stream (containers, init
containers, ephemeral containers), fully qualified (nginx becomes
docker.io/library/nginx:latest) and sorted: the list to pre-pull, or to copy
with "regcred mirror".`,
		Example: `  helm template shop ./chart | regcred manifests images
  regcred manifests images deploy/ -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateOutput(output, "text", "json"); err != nil {
				return err
			}
			docs, err := readInputs(s.In, args)
			if err != nil {
				return &usageError{err}
			}
			images, warnings, err := manifests.Images(docs)
			if err != nil {
				return &usageError{err}
			}
			for _, w := range warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %s (skipped)\n", w)
			}
			if output == "json" {
				if images == nil {
					images = []string{}
				}
				return printObject(cmd.OutOrStdout(), "json", images)
			}
			for _, img := range images {
				fmt.Fprintln(cmd.OutOrStdout(), img)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text (one per line) or json")
	return cmd
}
