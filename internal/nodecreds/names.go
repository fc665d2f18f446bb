// Package nodecreds is regcred's kubelet credential broker: the kubelet's
// image credential provider plugin (on the node) sends it the Pod's
// ServiceAccount token with the image, and the broker answers with the
// credentials that select that ServiceAccount, so no pull Secret exists in
// any namespace. This file holds the names the broker, the plugin, the
// node agent, the chart and `regcred kubelet-config` share.
package nodecreds

const (
	// Path is where the broker serves on the webhook's HTTPS server.
	Path = "/node-credentials"
	// HealthPath answers 200 once the broker can answer.
	HealthPath = Path + "/healthz"
	// DefaultAudience is the audience of the ServiceAccount tokens the
	// kubelet mints for regcred's plugin.
	DefaultAudience = "regcred.dev"
	// PluginName is the plugin's executable name in the kubelet's
	// credential provider bin dir, and the provider's name in the
	// CredentialProviderConfig.
	PluginName = "regcred-credential-provider"
	// PluginCommand is the regcred subcommand the kubelet runs.
	PluginCommand = "kubelet-credential-provider"
	// DefaultConfigDir is the host directory the node agent writes and the
	// plugin reads: the files ServerFile, ServerNameFile and CAFile.
	DefaultConfigDir = "/var/lib/regcred/node-credentials"
	ServerFile       = "server"
	ServerNameFile   = "server-name"
	CAFile           = "ca.crt"
	// ConfigMapName is the ConfigMap the manager publishes in its
	// namespace for the node agent: keys CAFile and ServerNameFile.
	ConfigMapName = "regcred-node-credentials"
	// MaxBody bounds the requests and answers on the wire.
	MaxBody = 64 << 10
)
