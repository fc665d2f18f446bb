package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/keyring"
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

// credentialSet is the kubelet's view of the credentials: one keyring from
// the pull Secrets (the Pod's, then --secret ones), then the node's configs.
type credentialSet struct {
	pullSecrets *keyring.Keyring
	// malformed is set when a pull Secret cannot be parsed: the kubelet then
	// fails every pull of the Pod.
	malformed *keyring.MalformedSecretError
	nodes     []*keyring.Keyring
	pod       *kubecreds.PodSecrets
	// warnings are things a person should know; never secret values.
	warnings []string
}

// load reads every selected source.
func (c *credFlags) load(ctx context.Context) (*credentialSet, error) {
	set := &credentialSet{pullSecrets: &keyring.Keyring{}}
	var secrets []keyring.PullSecret

	if c.pod != "" || len(c.secrets) > 0 {
		cs, err := c.kube.clientset()
		if err != nil {
			return nil, err
		}
		if c.pod != "" {
			ns, name, _ := splitNamespacedName(c.pod)
			ps, err := kubecreds.ForPod(ctx, cs, ns, name)
			if err != nil {
				return nil, err
			}
			set.pod = ps
			secrets = append(secrets, ps.Secrets...)
			for _, m := range ps.Missing {
				set.warnings = append(set.warnings, fmt.Sprintf("pull secret %s does not exist: the kubelet skips it", m))
			}
			set.warnings = append(set.warnings, ps.Notes...)
		}
		more, warnings, err := fetchSecrets(ctx, cs, c.secrets)
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, more...)
		set.warnings = append(set.warnings, warnings...)
	}

	kr, ignored, err := keyring.FromPullSecrets(secrets)
	for _, ig := range ignored {
		set.warnings = append(set.warnings, fmt.Sprintf("pull secret %s %s: the kubelet ignores it", ig.Secret, ig.Reason))
	}
	var malformed *keyring.MalformedSecretError
	switch {
	case errors.As(err, &malformed):
		set.malformed = malformed
	case err != nil:
		return nil, err
	default:
		set.pullSecrets = kr
	}

	if c.cloud.set() {
		// A token regcred would write into a credential's Secrets, tried
		// as a node credential after the pull Secrets.
		cfg, expires, err := c.cloud.config(ctx, c.cloudKeys)
		if err != nil {
			return nil, err
		}
		origin := fmt.Sprintf("%s token (expires %s)", c.cloud.kind(), expires.UTC().Format(time.RFC3339))
		node := &keyring.Keyring{}
		node.Add(origin, cfg)
		set.nodes = append(set.nodes, node)
	}

	for _, path := range c.dockerConfigs {
		cfg, err := readDockerConfigFile(path)
		if err != nil {
			return nil, err
		}
		node := &keyring.Keyring{}
		for _, bad := range node.Add(path, cfg) {
			set.warnings = append(set.warnings, fmt.Sprintf("%s: registry key %q is not a valid URL: the kubelet ignores it", path, bad))
		}
		set.nodes = append(set.nodes, node)
	}
	return set, nil
}

func fetchSecrets(ctx context.Context, cs kubernetes.Interface, refs []string) ([]keyring.PullSecret, []string, error) {
	var out []keyring.PullSecret
	var warnings []string
	for _, ref := range refs {
		ns, name, _ := splitNamespacedName(ref)
		s, err := kubecreds.GetSecret(ctx, cs, ns, name)
		if apierrors.IsNotFound(err) {
			warnings = append(warnings, fmt.Sprintf("pull secret %s does not exist: the kubelet skips it", ref))
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		out = append(out, s)
	}
	return out, warnings, nil
}

// readDockerConfigFile reads a config.json ({"auths": ...}) or, when the
// file is named .dockercfg, the legacy format: the kubelet tells them apart
// by name too.
func readDockerConfigFile(path string) (*dockercfg.Config, error) {
	cfg, err := dockercfg.ReadFile(path)
	if err != nil {
		return nil, &usageError{err}
	}
	return cfg, nil
}

// candidates lists what the kubelet tries for the normalized repository,
// in order.
func (s *credentialSet) candidates(repo string) []keyring.Credential {
	var out []keyring.Credential
	if s.malformed == nil {
		out = append(out, s.pullSecrets.Lookup(repo)...)
	}
	for _, n := range s.nodes {
		out = append(out, n.Lookup(repo)...)
	}
	return out
}
