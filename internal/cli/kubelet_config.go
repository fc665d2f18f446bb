package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/nodecreds/kubeletconfig"
)

const kubeletConfigLong = `Print the kubelet's CredentialProviderConfig (kubelet.config.k8s.io/v1)
that makes the kubelet ask regcred for pull credentials with the Pod's
ServiceAccount token (credentials with spec.delivery Node or Both), and the
kubelet flags that load it.

The provider it describes is ` + nodecreds.PluginName + `, run with
"` + nodecreds.PluginCommand + `", with tokenAttributes: the audience
(--audience, the manager's --node-credentials-audience), cacheType
ServiceAccount (the kubelet caches an answer per ServiceAccount, and
re-verifies images already on the node per ServiceAccount) and
requireServiceAccount: true. --match-image says which images the kubelet
asks regcred for: host globs ("*" per host label), an optional port that
must match exactly, and an optional path prefix; every entry is checked
with the kubelet's own rules, because the kubelet does not start with an
invalid file.

The kubelet needs, on every node: this file and an executable at
--bin-dir/regcred-credential-provider, both before it starts (a kubelet
whose configured plugin is missing does not start; a placeholder script
that exits 1 will do, the chart's node agent replaces it with regcred's
binary), and the two flags. The API server must also let nodes request tokens for
the audience: the chart's ClusterRole with verb
request-serviceaccounts-token-audience, bound to system:nodes.

kubeadm: save the YAML on the node and add the flags to
nodeRegistration.kubeletExtraArgs of the JoinConfiguration (or, on a
running node, to KUBELET_EXTRA_ARGS in /etc/default/kubelet or
/etc/sysconfig/kubelet), then restart the kubelet.

EKS (AL2023, nodeadm): nodeadm already gives the kubelet the ECR provider
(/etc/eks/image-credential-provider/config.json). The v1.37 kubelet reads
every *.yaml and *.json of a directory, so keep both: copy config.json and
regcred's file into one directory from the user data's shell part, put the
plugin in /etc/eks/image-credential-provider (the chart's node agent
pluginDir), and set NodeConfig spec.kubelet.flags to the directory.

k3s and RKE2: save the YAML on the node and add the flags, without their
leading "--", to kubelet-arg in /etc/rancher/k3s/config.yaml (RKE2:
/etc/rancher/rke2/config.yaml), then restart k3s (rke2-server or
rke2-agent).

Output (--format): yaml (the file), flags (the kubelet flags, one line), or
all (the default: the file, then the flags as a comment).`

const kubeletConfigExample = `  # The file and the flags for one registry.
  regcred kubelet-config --match-image registry.example.com

  # kubeadm: write the file; the flags go to kubeletExtraArgs.
  regcred kubelet-config --match-image '*.registry.example.com' --format yaml \
    | sudo tee /etc/kubernetes/image-credential-provider-config.yaml
  #   JoinConfiguration (kubeadm.k8s.io/v1beta4):
  #   nodeRegistration:
  #     kubeletExtraArgs:
  #     - name: image-credential-provider-config
  #       value: /etc/kubernetes/image-credential-provider-config.yaml
  #     - name: image-credential-provider-bin-dir
  #       value: /var/lib/regcred/bin

  # EKS (nodeadm): in the user data's shell part, before the kubelet starts:
  mkdir -p /etc/eks/credential-providers
  cp /etc/eks/image-credential-provider/config.json /etc/eks/credential-providers/
  regcred kubelet-config --match-image registry.example.com --format yaml \
    > /etc/eks/credential-providers/regcred.yaml
  #   and in its NodeConfig (node.eks.aws/v1alpha1):
  #   spec:
  #     kubelet:
  #       flags:
  #       - --image-credential-provider-config=/etc/eks/credential-providers
  #       - --image-credential-provider-bin-dir=/etc/eks/image-credential-provider

  # k3s / RKE2: the file, then kubelet-arg in /etc/rancher/k3s/config.yaml.
  regcred kubelet-config --match-image registry.example.com --format yaml \
    --config-file /etc/rancher/k3s/regcred-credential-provider.yaml \
    > /etc/rancher/k3s/regcred-credential-provider.yaml
  #   kubelet-arg:
  #   - image-credential-provider-config=/etc/rancher/k3s/regcred-credential-provider.yaml
  #   - image-credential-provider-bin-dir=/var/lib/regcred/bin`

type kubeletConfigOptions struct {
	config kubeletconfig.Options
	format string
}

func newKubeletConfigCommand(s Streams) *cobra.Command {
	var o kubeletConfigOptions
	cmd := &cobra.Command{
		Use:     "kubelet-config",
		Short:   "Print the kubelet's credential provider configuration that asks regcred, and the kubelet flags",
		Long:    kubeletConfigLong,
		Example: kubeletConfigExample,
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(s)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *kubeletConfigOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.config.MatchImages, "match-image", nil, "image pattern the kubelet asks regcred for: HOST[:PORT][/PATH], \"*\" globs per host label (repeatable, required)")
	fs.StringVar(&o.config.Audience, "audience", nodecreds.DefaultAudience, "audience of the ServiceAccount tokens: the manager's --node-credentials-audience")
	fs.DurationVar(&o.config.CacheDuration, "cache-duration", kubeletconfig.DefaultCacheDuration, "defaultCacheDuration: how long the kubelet keeps an answer that names no duration (the broker's answers do)")
	fs.StringVar(&o.config.ConfigDir, "config-dir", nodecreds.DefaultConfigDir, "the plugin's configuration directory on the node, as the node agent writes it")
	fs.StringVar(&o.config.BinDir, "bin-dir", kubeletconfig.DefaultBinDir, "the kubelet's --image-credential-provider-bin-dir, where the node agent installs the plugin")
	fs.StringVar(&o.config.ConfigFile, "config-file", kubeletconfig.DefaultConfigFile, "where the YAML is saved on the node, for the printed --image-credential-provider-config")
	fs.StringVar(&o.format, "format", "all", "output: yaml, flags or all")
}

func (o *kubeletConfigOptions) run(s Streams) error {
	switch o.format {
	case "yaml", "flags", "all":
	default:
		return usageErrorf("unknown --format %q: use yaml, flags or all", o.format)
	}
	if len(o.config.MatchImages) == 0 {
		return usageErrorf("--match-image is required: the images the kubelet asks regcred for, e.g. --match-image registry.example.com")
	}
	if o.config.CacheDuration <= 0 {
		return usageErrorf("--cache-duration must be positive, got %s", o.config.CacheDuration)
	}
	yamlOut, err := kubeletconfig.Render(o.config)
	if err != nil {
		return &usageError{err}
	}
	flags := kubeletconfig.Flags(o.config)
	switch o.format {
	case "yaml":
		_, err = s.Out.Write(yamlOut)
	case "flags":
		_, err = fmt.Fprintln(s.Out, flags)
	default:
		var b strings.Builder
		b.Write(yamlOut)
		fmt.Fprintf(&b, "# Save the above on every node as %s, and start the kubelet with:\n", o.config.ConfigFile)
		fmt.Fprintf(&b, "#   %s\n", flags)
		fmt.Fprintf(&b, "# The plugin %s must be in %s before the kubelet starts (a placeholder will do: the chart's node agent installs the binary).\n", nodecreds.PluginName, o.config.BinDir)
		_, err = s.Out.Write([]byte(b.String()))
	}
	return err
}
