package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/types"

	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/kubecreds"
)

// credFlags select where resolve and check read credentials from.
type credFlags struct {
	dockerConfigs []string
	secrets       []string
	pod           string
	cloud         cloudFlags
	// cloudKeys are the registries a cloud token is keyed by: the image's
	// (check, resolve), else the cloud's own.
	cloudKeys []string
	kube      kubeFlags
}

func (c *credFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&c.dockerConfigs, "docker-config", nil, "a docker config file (config.json, or a legacy .dockercfg), read like the node's own config: tried after pull secrets (repeatable)")
	fs.StringArrayVar(&c.secrets, "secret", nil, "a pull Secret NAMESPACE/NAME in the cluster, read like a Pod's imagePullSecrets entry (repeatable, in order)")
	fs.StringVar(&c.pod, "pod", "", "a Pod NAMESPACE/NAME: use its imagePullSecrets as the kubelet does")
	c.cloud.addFlags(fs)
	c.kube.addFlags(fs, false)
}

func (c *credFlags) validate() error {
	if len(c.dockerConfigs) == 0 && len(c.secrets) == 0 && c.pod == "" && !c.cloud.set() {
		return usageErrorf("give at least one of --docker-config, --secret, --pod, or a cloud token (--from-ecr, --from-ecr-public, --from-gcp, --from-acr)")
	}
	if c.cloud.set() {
		if _, err := c.cloud.fetcher(); err != nil {
			return err
		}
	}
	for _, s := range append(append([]string(nil), c.secrets...), c.pod) {
		if s == "" {
			continue
		}
		if _, _, err := splitNamespacedName(s); err != nil {
			return err
		}
	}
	return nil
}

func splitNamespacedName(s string) (string, string, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", usageErrorf("%q is not NAMESPACE/NAME", s)
	}
	return ns, name, nil
}

// load reads every selected source, in the kubelet's order: the pull
// Secrets, then a cloud token and the docker configs as the node's own.
func (c *credFlags) load(ctx context.Context) (*kubecreds.Set, error) {
	src, err := c.sources()
	if err != nil {
		return nil, err
	}
	set, err := kubecreds.Load(ctx, src)
	if err != nil {
		return nil, err
	}
	if c.cloud.set() {
		// A token regcred would write into a credential's Secrets, tried
		// as a node credential after the pull Secrets.
		cfg, expires, err := c.cloud.config(ctx, c.cloudKeys)
		if err != nil {
			return nil, err
		}
		set.AddNode(fmt.Sprintf("%s token (expires %s)", c.cloud.kind(), expires.UTC().Format(time.RFC3339)), cfg)
	}
	for _, path := range c.dockerConfigs {
		cfg, err := readDockerConfigFile(path)
		if err != nil {
			return nil, err
		}
		for _, bad := range set.AddNode(path, cfg) {
			set.Warnings = append(set.Warnings, fmt.Sprintf("%s: registry key %q is not a valid URL: the kubelet ignores it", path, bad))
		}
	}
	return set, nil
}

// sources names the Pod and Secrets to read, with a client when there are
// any (validate has checked the references).
func (c *credFlags) sources() (kubecreds.Sources, error) {
	var src kubecreds.Sources
	if c.pod == "" && len(c.secrets) == 0 {
		return src, nil
	}
	cs, err := c.kube.clientset()
	if err != nil {
		return src, err
	}
	src.Client = cs
	if c.pod != "" {
		ns, name, _ := splitNamespacedName(c.pod)
		src.Pod = &types.NamespacedName{Namespace: ns, Name: name}
	}
	for _, ref := range c.secrets {
		ns, name, _ := splitNamespacedName(ref)
		src.Secrets = append(src.Secrets, types.NamespacedName{Namespace: ns, Name: name})
	}
	return src, nil
}

// readDockerConfigFile reads a config.json ({"auths": ...}) or, when the
// file is named .dockercfg, the legacy format: the kubelet tells them apart
// by name too, and runs no credential helper.
func readDockerConfigFile(path string) (*dockercfg.Config, error) {
	cfg, err := dockercfg.ReadFile(path)
	if err != nil {
		return nil, &usageError{err}
	}
	return cfg, nil
}
