package testcluster

import (
	"os"
	"path/filepath"

	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/nodecreds/kubeletconfig"
)

// Provider is regcred's kubelet credential provider laid out under one
// directory, as a node has it: BinDir with the plugin, ConfigDir for the
// broker's address and CA (the node agent's files), and the
// CredentialProviderConfig `regcred kubelet-config` prints.
type Provider struct {
	BinDir, ConfigDir, ConfigFile string
}

// NewProvider writes the layout under dir for matchImages, with plugin as
// the plugin's executable (a kubelet does not start without it), and
// returns it with the option that starts the kubelet with it.
func NewProvider(dir string, plugin []byte, matchImages ...string) (*Provider, Option, error) {
	p := &Provider{BinDir: filepath.Join(dir, "bin"), ConfigDir: filepath.Join(dir, "config"), ConfigFile: filepath.Join(dir, "credential-provider.yaml")}
	for _, d := range []string{p.BinDir, p.ConfigDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(p.BinDir, nodecreds.PluginName), plugin, 0o755); err != nil {
		return nil, nil, err
	}
	cfg, err := kubeletconfig.Render(kubeletconfig.Options{MatchImages: matchImages, ConfigDir: p.ConfigDir})
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(p.ConfigFile, cfg, 0o644); err != nil {
		return nil, nil, err
	}
	return p, WithCredentialProvider(p.ConfigFile, p.BinDir), nil
}
