package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/nodecreds/nodeplugin"
)

const kubeletCredentialProviderLong = `The kubelet's image credential provider plugin. The kubelet runs it for
every image its CredentialProviderConfig matches, writes a
CredentialProviderRequest (credentialprovider.kubelet.k8s.io/v1) carrying
the Pod's ServiceAccount token on stdin, and reads the answer on stdout.
The plugin forwards the request to regcred's broker over HTTPS and writes
the broker's CredentialProviderResponse back: the credentials whose
selectors pick that ServiceAccount, and no Secret anywhere.

You do not run this by hand: "regcred kubelet-config" prints the kubelet
configuration that runs it, and the node agent ("regcred node-agent", the
chart's DaemonSet with nodeCredentials.enabled) installs it on the node as
` + nodecreds.PluginName + ` and writes the broker's address and CA to
` + nodecreds.DefaultConfigDir + `, where the plugin reads them
when --server is not given.

When the broker is unreachable or refuses, nothing is written on stdout and
the plugin exits 1 with a one-line reason on stderr, which the kubelet
puts in its log and the Pod's pull error. It never runs past --timeout.
The token never appears in any output but the request it forwards.`

const kubeletCredentialProviderExample = `  # What the kubelet does (normally with no flags: the node agent's files).
  regcred kubelet-credential-provider < request.json

  # Against a broker given by hand.
  regcred kubelet-credential-provider --server https://10.96.0.12:443 \
    --server-name regcred-webhook.regcred-system.svc --ca-file ca.crt < request.json`

type kubeletCredentialProviderOptions struct {
	plugin nodeplugin.Options
}

func newKubeletCredentialProviderCommand(s Streams) *cobra.Command {
	var o kubeletCredentialProviderOptions
	cmd := &cobra.Command{
		Use:     nodecreds.PluginCommand,
		Short:   "The kubelet's image credential provider plugin: ask regcred's broker with the Pod's ServiceAccount token",
		Long:    kubeletCredentialProviderLong,
		Example: kubeletCredentialProviderExample,
		Args:    exactArgs(0, "no arguments (the request comes on stdin)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), s)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *kubeletCredentialProviderOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.plugin.Server, "server", "", "broker URL, https://HOST[:PORT] (default: the file "+nodecreds.ServerFile+" in --config-dir)")
	fs.StringVar(&o.plugin.ServerName, "server-name", "", "TLS server name to verify when --server is an IP (default: the file "+nodecreds.ServerNameFile+" in --config-dir, without --server)")
	fs.StringVar(&o.plugin.CAFile, "ca-file", "", "PEM CA bundle that verifies the broker (default: "+nodecreds.CAFile+" in --config-dir without --server, the system roots with it)")
	fs.StringVar(&o.plugin.ConfigDir, "config-dir", nodecreds.DefaultConfigDir, "directory the node agent writes, read when --server is not given")
	fs.DurationVar(&o.plugin.Timeout, "timeout", nodeplugin.DefaultTimeout, "time limit for the whole call (the kubelet kills plugins after 1m)")
}

func (o *kubeletCredentialProviderOptions) run(ctx context.Context, s Streams) error {
	if o.plugin.Timeout <= 0 || o.plugin.Timeout > time.Minute {
		return usageErrorf("--timeout must be positive and at most 1m (the kubelet's own limit), got %s", o.plugin.Timeout)
	}
	if o.plugin.ConfigDir == "" {
		return usageErrorf("--config-dir must not be empty")
	}
	return nodeplugin.Run(ctx, s.In, s.Out, o.plugin)
}
