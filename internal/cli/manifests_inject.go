package cli

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/manifests"
)

type manifestsInjectOptions struct {
	secrets     []string
	credFiles   []string
	fromCluster bool
	// namespace of workloads that name none.
	namespace        string
	regcredNamespace string
	kube             kubeFlags
	mirrors          mirrorFlags
	quiet            bool
	// objs are the credential objects and namespaces read.
	objs manifests.CredentialObjects
}

const manifestsInjectLong = `Add imagePullSecrets to the Pod template of every workload with at least one
image (containers, init containers, ephemeral containers) that matches the
registries of a credential, with the kubelet's own matching rules. Existing
entries are kept and nothing is added twice, so running it again changes
nothing.

Credentials come from:
  --secret NAME=REGISTRY[,REGISTRY...]   a pull Secret and its registry keys
  --credentials FILE                     RegistryCredential / ClusterRegistryCredential objects
  --from-cluster                         the credentials in the current cluster

A credential is added only in the namespaces where it acts, as the admission
webhook decides: a RegistryCredential in its own namespace; a
ClusterRegistryCredential where its namespaceSelector selects and
excludeNamespaces does not exclude. Nothing is added in kube-system,
kube-public, kube-node-lease or regcred's namespace, nor to a workload whose
Pod template or namespace is labelled regcred.dev/inject=false. A workload's
namespace is its metadata.namespace (each List item's own), or --namespace
($HELM_NAMESPACE as a Helm plugin, else "default"). Selectors and opt-outs
read the namespace's labels:
from the cluster with --from-cluster, from Namespace objects in the
--credentials and --mirrors files otherwise (a namespace not given there has only its
kubernetes.io/metadata.name label).

With --mirror or --mirrors, images are first rewritten to their mirrors, then
matched (as the admission webhook does); a ClusterImageMirror with a
namespaceSelector rewrites only in the namespaces it selects.`

func newManifestsInjectCommand(s Streams) *cobra.Command {
	var o manifestsInjectOptions
	cmd := &cobra.Command{
		Use:   "inject [FILE|DIR|-]...",
		Short: "Add imagePullSecrets to every workload whose images match a credential",
		Long:  manifestsInjectLong,
		Example: `  helm template shop ./chart | regcred manifests inject --secret regcred-harbor=harbor.example.com
  regcred manifests inject deploy/ --credentials regcred-credentials.yaml > out.yaml
  regcred manifests inject --from-cluster --mirror docker.io=harbor.internal/dockerhub < app.yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), s, args)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *manifestsInjectOptions) addFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&o.secrets, "secret", nil, "a pull Secret NAME=REGISTRY[,REGISTRY...] (repeatable)")
	f.StringArrayVar(&o.credFiles, "credentials", nil, "a YAML file of RegistryCredential and ClusterRegistryCredential objects (repeatable)")
	f.BoolVar(&o.fromCluster, "from-cluster", false, "use the credentials of the current cluster")
	f.StringVarP(&o.namespace, "namespace", "n", "", "the namespace of workloads that name none, where kubectl apply -n would put them (default: $HELM_NAMESPACE, else \"default\")")
	f.StringVar(&o.regcredNamespace, "regcred-namespace", "regcred-system", "the namespace regcred runs in (no ClusterRegistryCredential acts there)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "do not print warnings")
	o.kube.addFlags(f, false)
	o.mirrors.addFlags(f)
}

func (o *manifestsInjectOptions) run(ctx context.Context, s Streams, args []string) error {
	// Namespaces given beside the mirrors count too, for credentials and
	// opt-outs as for mirrors.
	if err := o.mirrors.decodeNamespaces(&o.objs); err != nil {
		return err
	}
	creds, skip, err := o.credentials(ctx)
	if err != nil {
		return err
	}
	rules, err := o.mirrors.rules(ctx, nil, func() (func(string) *corev1.Namespace, error) { return o.objs.Namespace(), nil })
	if err != nil {
		return err
	}
	docs, err := readInputs(s.In, args)
	if err != nil {
		return &usageError{err}
	}
	// Helm sets HELM_NAMESPACE for its plugins (the Helm 4 post-renderer).
	namespace := cmp.Or(o.namespace, os.Getenv("HELM_NAMESPACE"), "default")
	stats, err := manifests.TransformDocuments(docs, s.Out, manifests.Options{Mirrors: rules, Credentials: creds, Namespace: namespace, Skip: skip})
	if err != nil {
		return &usageError{err}
	}
	if !o.quiet {
		printStats(s.Err, stats)
	}
	return nil
}

// credentials gathers the --secret, --credentials and --from-cluster ones.
func (o *manifestsInjectOptions) credentials(ctx context.Context) ([]manifests.Credential, func(string, map[string]string) bool, error) {
	creds, err := o.gather(ctx)
	if err != nil {
		return nil, nil, err
	}
	return creds, o.objs.Skip(o.regcredNamespace), nil
}

func (o *manifestsInjectOptions) gather(ctx context.Context) ([]manifests.Credential, error) {
	creds, err := parseSecretSpecs(o.secrets)
	if err != nil {
		return nil, err
	}
	objs := &o.objs
	for _, f := range o.credFiles {
		docs, err := readStreamFile(f)
		if err != nil {
			return nil, err
		}
		if err := objs.Decode(docs); err != nil {
			return nil, usageErrorf("%s: %v", f, err)
		}
	}
	if o.fromCluster {
		r, err := clusterReader(&o.kube)()
		if err != nil {
			return nil, err
		}
		if err := listCredentialObjects(ctx, r, objs); err != nil {
			return nil, err
		}
		{
			// Their labels decide selectors and opt-outs.
			var nl corev1.NamespaceList
			if err := r.List(ctx, &nl); err != nil {
				return nil, fmt.Errorf("list namespaces (their labels decide where ClusterRegistryCredentials act and who opts out): %w", err)
			}
			objs.Namespaces = append(objs.Namespaces, nl.Items...)
		}
	}
	injectable, disabled, err := objs.Injectable(o.regcredNamespace)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	creds = append(creds, injectable...)
	switch {
	case len(creds) == 0 && disabled > 0:
		return nil, fmt.Errorf("no credentials: every one given has podInjection.enabled: false or delivery: Node (the kubelet gets those from regcred's broker, not from imagePullSecrets)")
	case len(creds) == 0 && o.fromCluster:
		return nil, fmt.Errorf("no credentials: the cluster has no RegistryCredential or ClusterRegistryCredential")
	case len(creds) == 0:
		return nil, usageErrorf("no credentials: give --secret, --credentials or --from-cluster")
	}
	return creds, nil
}

// listCredentialObjects adds the credential objects of a cluster.
func listCredentialObjects(ctx context.Context, r client.Reader, o *manifests.CredentialObjects) error {
	var cl v1alpha1.ClusterRegistryCredentialList
	if err := r.List(ctx, &cl); err != nil {
		return fmt.Errorf("list ClusterRegistryCredentials: %w", err)
	}
	o.Cluster = append(o.Cluster, cl.Items...)
	var nl v1alpha1.RegistryCredentialList
	if err := r.List(ctx, &nl); err != nil {
		return fmt.Errorf("list RegistryCredentials: %w", err)
	}
	o.Namespaced = append(o.Namespaced, nl.Items...)
	return nil
}

// parseSecretSpecs reads --secret NAME=REGISTRY[,REGISTRY...] values.
func parseSecretSpecs(specs []string) ([]manifests.Credential, error) {
	var creds []manifests.Credential
	for _, spec := range specs {
		name, regs, ok := strings.Cut(spec, "=")
		if !ok || name == "" || regs == "" {
			return nil, usageErrorf("--secret %q: use NAME=REGISTRY[,REGISTRY...]", spec)
		}
		c := manifests.Credential{SecretName: name}
		for _, r := range strings.Split(regs, ",") {
			if _, err := keyring.NormalizeKey(r); err != nil || r == "" {
				return nil, usageErrorf("--secret %q: %q is not a registry key", spec, r)
			}
			c.Registries = append(c.Registries, r)
		}
		creds = append(creds, c)
	}
	return creds, nil
}
