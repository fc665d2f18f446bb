package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"regcred.dev/regcred/internal/version"
)

func newVersionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print regcred's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get()
			if output == "" {
				commit := info.Commit
				if commit == "" {
					commit = "unknown"
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "regcred %s (commit %s, %s, %s)\n", info.Version, commit, info.GoVersion, info.Platform)
				return err
			}
			return printObject(cmd.OutOrStdout(), output, info)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml (default: one line)")
	return cmd
}
