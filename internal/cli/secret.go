package cli

import "github.com/spf13/cobra"

func newSecretCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Make registry pull Secrets",
	}
	cmd.AddCommand(newSecretCreateCommand(s))
	return cmd
}
