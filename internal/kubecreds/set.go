package kubecreds

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/keyring"
)

// Sources name the pull Secrets to read: a Pod's imagePullSecrets, then
// Secrets as if listed after them.
type Sources struct {
	// Client reads the Pod and the Secrets; it may be nil when neither is
	// asked for.
	Client  kubernetes.Interface
	Pod     *types.NamespacedName
	Secrets []types.NamespacedName
}

// Set is the kubelet's view of a Pod's credentials: one keyring from the
// pull Secrets (the Pod's, then the extra ones), then the node's own
// credentials, each node source a keyring of its own.
type Set struct {
	PullSecrets *keyring.Keyring
	// Malformed is set when a pull Secret cannot be parsed: the kubelet then
	// fails every pull of the Pod.
	Malformed *keyring.MalformedSecretError
	Nodes     []*keyring.Keyring
	// Pod is what was read for Sources.Pod, nil without one.
	Pod *PodSecrets
	// Warnings are things a person should know; never secret values.
	Warnings []string
}

// Load reads the pull Secrets of src into a Set without node credentials.
func Load(ctx context.Context, src Sources) (*Set, error) {
	set := &Set{PullSecrets: &keyring.Keyring{}}
	secrets, err := set.readPullSecrets(ctx, src)
	if err != nil {
		return nil, err
	}
	kr, ignored, err := keyring.FromPullSecrets(secrets)
	for _, ig := range ignored {
		set.Warnings = append(set.Warnings, fmt.Sprintf("pull secret %s %s: the kubelet ignores it", ig.Secret, ig.Reason))
	}
	var malformed *keyring.MalformedSecretError
	switch {
	case errors.As(err, &malformed):
		set.Malformed = malformed
	case err != nil:
		return nil, err
	default:
		set.PullSecrets = kr
	}
	return set, nil
}

func (s *Set) readPullSecrets(ctx context.Context, src Sources) ([]keyring.PullSecret, error) {
	var secrets []keyring.PullSecret
	if src.Pod != nil {
		ps, err := ForPod(ctx, src.Client, src.Pod.Namespace, src.Pod.Name)
		if err != nil {
			return nil, err
		}
		s.Pod = ps
		secrets = append(secrets, ps.Secrets...)
		for _, m := range ps.Missing {
			s.Warnings = append(s.Warnings, missingWarning(m))
		}
		s.Warnings = append(s.Warnings, ps.Notes...)
	}
	for _, ref := range src.Secrets {
		sec, err := GetSecret(ctx, src.Client, ref.Namespace, ref.Name)
		if apierrors.IsNotFound(err) {
			s.Warnings = append(s.Warnings, missingWarning(ref.String()))
			continue
		}
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, sec)
	}
	return secrets, nil
}

func missingWarning(ref string) string {
	return fmt.Sprintf("pull secret %s does not exist: the kubelet skips it", ref)
}

// AddNode adds a node credential source (a docker config file, a cloud
// token), tried after the pull Secrets and the nodes added before it. It
// returns the registry keys the kubelet would ignore as invalid URLs.
func (s *Set) AddNode(origin string, cfg *dockercfg.Config) (ignored []string) {
	node := &keyring.Keyring{}
	ignored = node.Add(origin, cfg)
	s.Nodes = append(s.Nodes, node)
	return ignored
}

// Candidates lists what the kubelet tries for the normalized repository,
// in order.
func (s *Set) Candidates(repo string) []keyring.Credential {
	var out []keyring.Credential
	if s.Malformed == nil {
		out = append(out, s.PullSecrets.Lookup(repo)...)
	}
	for _, n := range s.Nodes {
		out = append(out, n.Lookup(repo)...)
	}
	return out
}
