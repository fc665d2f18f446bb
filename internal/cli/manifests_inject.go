package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/manifests"
)

func newManifestsInjectCommand(s Streams) *cobra.Command {
	var (
		secrets     []string
		credFiles   []string
		fromCluster bool
		kube        kubeFlags
		mirrors     mirrorFlags
		quiet       bool
	)
	cmd := &cobra.Command{
		Use:   "inject [FILE|DIR|-]...",
		Short: "Add imagePullSecrets to every workload whose images match a credential",
		Long: `Add imagePullSecrets to the Pod template of every workload with at least one
image (containers, init containers, ephemeral containers) that matches the
registries of a credential, with the kubelet's own matching rules. Existing
entries are kept and nothing is added twice, so running it again changes
nothing.

Credentials come from:
  --secret NAME=REGISTRY[,REGISTRY...]   a pull Secret and its registry keys
  --credentials FILE                     RegistryCredential / ClusterRegistryCredential objects
  --from-cluster                         the credentials in the current cluster

With --mirror or --mirrors, images are first rewritten to their mirrors, then
matched (as the admission webhook does).`,
		Example: `  helm template shop ./chart | regcred manifests inject --secret regcred-harbor=harbor.example.com
  regcred manifests inject deploy/ --credentials regcred-credentials.yaml > out.yaml
  regcred manifests inject --from-cluster --mirror docker.io=harbor.internal/dockerhub < app.yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var creds []manifests.Credential
			for _, spec := range secrets {
				name, regs, ok := strings.Cut(spec, "=")
				if !ok || name == "" || regs == "" {
					return usageErrorf("--secret %q: use NAME=REGISTRY[,REGISTRY...]", spec)
				}
				c := manifests.Credential{SecretName: name}
				for _, r := range strings.Split(regs, ",") {
					if _, err := keyring.NormalizeKey(r); err != nil || r == "" {
						return usageErrorf("--secret %q: %q is not a registry key", spec, r)
					}
					c.Registries = append(c.Registries, r)
				}
				creds = append(creds, c)
			}
			var cluster []v1alpha1.ClusterRegistryCredential
			var namespaced []v1alpha1.RegistryCredential
			for _, f := range credFiles {
				docs, err := readStreamFile(f)
				if err != nil {
					return err
				}
				if err := decodeKind(docs, "ClusterRegistryCredential", &cluster); err != nil {
					return usageErrorf("%s: %v", f, err)
				}
				if err := decodeKind(docs, "RegistryCredential", &namespaced); err != nil {
					return usageErrorf("%s: %v", f, err)
				}
			}
			var reader = clusterReader(&kube)
			if fromCluster {
				r, err := reader()
				if err != nil {
					return err
				}
				var cl v1alpha1.ClusterRegistryCredentialList
				if err := r.List(cmd.Context(), &cl); err != nil {
					return fmt.Errorf("list ClusterRegistryCredentials: %w", err)
				}
				cluster = append(cluster, cl.Items...)
				var nl v1alpha1.RegistryCredentialList
				if err := r.List(cmd.Context(), &nl); err != nil {
					return fmt.Errorf("list RegistryCredentials: %w", err)
				}
				namespaced = append(namespaced, nl.Items...)
			}
			var objects []*credential.Credential
			for i := range cluster {
				objects = append(objects, credential.FromCluster(&cluster[i]))
			}
			for i := range namespaced {
				objects = append(objects, credential.FromNamespaced(&namespaced[i]))
			}
			disabled := 0
			for _, c := range objects {
				// As the webhook does: a credential with injection turned
				// off is never added to workloads.
				if !c.InjectionEnabled() {
					disabled++
					continue
				}
				creds = append(creds, manifests.Credential{SecretName: c.SecretName(), Registries: c.Spec.Registries})
			}
			if len(creds) == 0 && disabled > 0 {
				return fmt.Errorf("no credentials: every one given has podInjection.enabled: false")
			}
			if len(creds) == 0 && fromCluster {
				return fmt.Errorf("no credentials: the cluster has no RegistryCredential or ClusterRegistryCredential")
			}
			if len(creds) == 0 {
				return usageErrorf("no credentials: give --secret, --credentials or --from-cluster")
			}
			rules, err := mirrors.rules(cmd.Context(), nil)
			if err != nil {
				return err
			}
			docs, err := readInputs(s.In, args)
			if err != nil {
				return &usageError{err}
			}
			stats, err := manifests.TransformDocuments(docs, cmd.OutOrStdout(), manifests.Options{Rules: rules, Credentials: creds})
			if err != nil {
				return &usageError{err}
			}
			if !quiet {
				printStats(cmd.ErrOrStderr(), stats)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&secrets, "secret", nil, "a pull Secret NAME=REGISTRY[,REGISTRY...] (repeatable)")
	f.StringArrayVar(&credFiles, "credentials", nil, "a YAML file of RegistryCredential and ClusterRegistryCredential objects (repeatable)")
	f.BoolVar(&fromCluster, "from-cluster", false, "use the credentials of the current cluster")
	f.BoolVarP(&quiet, "quiet", "q", false, "do not print warnings")
	kube.addFlags(f, false)
	mirrors.addFlags(f)
	return cmd
}
