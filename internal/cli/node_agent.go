package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/nodecreds/nodeagent"
)

const nodeAgentLong = `Keep regcred's kubelet credential provider plugin installed and configured
on this node. The chart's DaemonSet (nodeCredentials.enabled) runs it with
the kubelet's plugin directory and ` + nodecreds.DefaultConfigDir + ` mounted from
the host and the ConfigMap ` + nodecreds.ConfigMapName + ` mounted at --source-dir.

Every --interval it:
  * copies its own executable to PLUGIN_DIR/` + nodecreds.PluginName + ` when the
    content differs (mode 0755), so the plugin upgrades with the image;
  * writes ` + nodecreds.ServerFile + ` (from --server, or from the Service variables
    PREFIX_SERVICE_HOST and PREFIX_SERVICE_PORT with --service-env PREFIX),
    ` + nodecreds.ServerNameFile + ` and ` + nodecreds.CAFile + ` (from --source-dir) into --config-dir
    when they differ.
Every file is replaced atomically (temporary file, then rename), so the
kubelet never runs half a plugin or reads half a CA. A CA that holds no
certificate is refused and the node keeps the one it has.

It needs no API access. A failed pass (the ConfigMap not published yet) is
logged and retried; with --once the first pass's error is the exit status.`

const nodeAgentExample = `  # What the chart's DaemonSet runs.
  regcred node-agent --plugin-dir /host/plugins --config-dir /host/node-credentials \
    --service-env REGCRED_WEBHOOK

  # Install once, by hand, on a node.
  sudo regcred node-agent --once --plugin-dir /var/lib/regcred/bin \
    --server https://10.96.0.12:443 --source-dir ./node-credentials`

type nodeAgentOptions struct {
	agent nodeagent.Options
}

func newNodeAgentCommand(s Streams) *cobra.Command {
	var o nodeAgentOptions
	cmd := &cobra.Command{
		Use:     "node-agent",
		Short:   "Install the kubelet credential provider plugin on this node and keep its broker address and CA current",
		Long:    nodeAgentLong,
		Example: nodeAgentExample,
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), s)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *nodeAgentOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.agent.PluginDir, "plugin-dir", "", "the kubelet's --image-credential-provider-bin-dir, as mounted here (required)")
	fs.StringVar(&o.agent.ConfigDir, "config-dir", nodecreds.DefaultConfigDir, "the plugin's configuration directory, as mounted here")
	fs.StringVar(&o.agent.SourceDir, "source-dir", nodeagent.DefaultSourceDir, "the mounted ConfigMap "+nodecreds.ConfigMapName+" (keys "+nodecreds.CAFile+" and "+nodecreds.ServerNameFile+")")
	fs.StringVar(&o.agent.Server, "server", "", "the broker's URL, https://HOST[:PORT], as the node reaches it")
	fs.StringVar(&o.agent.ServiceEnv, "service-env", "", "read the broker's address from PREFIX_SERVICE_HOST and PREFIX_SERVICE_PORT (a Service regcred-webhook gives REGCRED_WEBHOOK)")
	fs.DurationVar(&o.agent.Interval, "interval", nodeagent.DefaultInterval, "time between checks")
	fs.BoolVar(&o.agent.Once, "once", false, "check and write once, then exit")
}

func (o *nodeAgentOptions) run(ctx context.Context, s Streams) error {
	if o.agent.Interval <= 0 {
		return usageErrorf("--interval must be positive, got %s", o.agent.Interval)
	}
	if err := o.agent.Validate(); err != nil {
		return &usageError{err}
	}
	o.agent.Logf = func(format string, args ...any) {
		fmt.Fprintf(s.Err, "%s %s\n", time.Now().UTC().Format(time.RFC3339), oneLine(fmt.Sprintf(format, args...)))
	}
	return nodeagent.Run(ctx, o.agent)
}
