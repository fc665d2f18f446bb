package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1apply "k8s.io/client-go/applyconfigurations/core/v1"

	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/dockercfg/credhelpers"
	"regcred.dev/regcred/internal/keyring"
)

const fieldManager = "regcred"

type secretCreateOptions struct {
	server        string
	username      string
	email         string
	passwordStdin bool
	passwordFile  string
	fromConfig    string
	registries    []string
	output        string
	apply         bool
	cloud         cloudFlags
	kube          kubeFlags
}

const secretCreateLong = `Make a kubernetes.io/dockerconfigjson pull Secret, printed as a manifest
(YAML by default) or, with --apply, created or updated in the cluster.

Either from flags, for one registry:
  --server HOST --username USER (--password-stdin | --password-file FILE)

or from an existing docker config file, whose credential helpers
(docker-credential-*, "credsStore", "credHelpers") are run to get the
actual credentials:
  --from-docker-config FILE [--registry HOST ...]

or from a short-lived cloud token, got with your own identity the way the
cloud's CLI finds it (environment, profile, SSO, metadata server):
  --from-ecr REGION | --from-ecr-public | --from-gcp |
  --from-acr LOGIN-SERVER --tenant-id ID [--client-id ID]   [--registry HOST ...]
Such a Secret stops working when the token expires (ECR 12 hours, Google
about 1 hour, ACR about 3 hours); for Secrets that stay current, make a
ClusterRegistryCredential with spec.source.ecr, gcp or acr instead.

The rendered config is the one "kubectl create secret docker-registry"
writes (username, password and auth), which Docker, containerd, CRI-O,
podman and skopeo all read. There is no --password flag: a password on the
command line ends up in shell history and process listings.`

const secretCreateExample = `  # A Harbor robot account, password from a file, printed as YAML.
  regcred secret create harbor-robot --server harbor.example.com \
    --username 'robot$ci' --password-file robot.token -n regcred-system

  # Pipe a token in and apply it to the cluster.
  echo "$GHCR_TOKEN" | regcred secret create ghcr --server ghcr.io \
    --username acme-bot --password-stdin --apply -n team-a

  # A one-off ECR Secret for your account's registry in eu-west-1.
  regcred secret create ecr --from-ecr eu-west-1 -n team-a --apply

  # Convert your docker login (credential helpers included) for two registries.
  regcred secret create mine --from-docker-config ~/.docker/config.json \
    --registry ghcr.io --registry docker.io -o json`

func newSecretCreateCommand(s Streams) *cobra.Command {
	var o secretCreateOptions
	cmd := &cobra.Command{
		Use:     "create NAME",
		Short:   "Make a kubernetes.io/dockerconfigjson pull Secret",
		Long:    secretCreateLong,
		Example: secretCreateExample,
		Args:    exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), s, args[0])
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *secretCreateOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.server, "server", "", "registry key the credential is for: a host (registry.example.com), host:port, or host/path prefix; \"docker.io\" means Docker Hub")
	f.StringVar(&o.username, "username", "", "user name (robot account, token name, ...)")
	f.StringVar(&o.email, "email", "", "email address, kept for old clients (optional)")
	f.BoolVar(&o.passwordStdin, "password-stdin", false, "read the password or token from standard input")
	f.StringVar(&o.passwordFile, "password-file", "", "read the password or token from this file")
	f.StringVar(&o.fromConfig, "from-docker-config", "", "take the credentials from this docker config file (config.json)")
	f.StringArrayVar(&o.registries, "registry", nil, "with --from-docker-config: only this registry (default: every registry in the file); with a cloud token: key it by this registry (default: the account's ECR registry, Google's hosts, the ACR login server) (repeatable)")
	o.cloud.addFlags(f)
	f.StringVarP(&o.output, "output", "o", "yaml", "manifest format: yaml or json")
	f.BoolVar(&o.apply, "apply", false, "create or update the Secret in the cluster (server-side apply) instead of printing it")
	o.kube.addFlags(f, true)
}

func (o *secretCreateOptions) run(ctx context.Context, s Streams, name string) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return usageErrorf("invalid Secret name %q: %s", name, strings.Join(errs, "; "))
	}
	if err := validateOutput(o.output, "yaml", "json"); err != nil {
		return err
	}
	cfg, err := o.config(ctx, s)
	if err != nil {
		return err
	}
	data, err := cfg.MarshalDockerConfigJSON()
	if err != nil {
		return &usageError{err}
	}

	namespace := o.kube.namespace
	if o.apply {
		namespace = o.kube.resolvedNamespace()
		return o.applySecret(ctx, s.Out, name, namespace, data)
	}
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
	return printObject(s.Out, o.output, secretManifest(secret))
}

// config gets the credentials from the one source the flags name: a cloud
// token, a docker config file, or --server and --username.
func (o *secretCreateOptions) config(ctx context.Context, s Streams) (*dockercfg.Config, error) {
	switch {
	case o.cloud.set():
		if o.fromConfig != "" || o.server != "" || o.username != "" || o.passwordStdin || o.passwordFile != "" || o.email != "" {
			return nil, usageErrorf("a cloud token (--from-ecr, --from-ecr-public, --from-gcp, --from-acr) cannot be combined with --from-docker-config, --server, --username, --email or a password")
		}
		cfg, expires, err := o.cloud.config(ctx, o.registries)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(s.Err, "the token expires at %s (in %s)\n", expires.UTC().Format(time.RFC3339), time.Until(expires).Round(time.Minute))
		return cfg, nil
	case o.cloud.endpoint != "" || o.cloud.tenantID != "" || o.cloud.clientID != "" || len(o.cloud.caFiles) > 0:
		return nil, usageErrorf("--endpoint, --tenant-id, --client-id and --cloud-ca-file only apply with --from-ecr, --from-ecr-public, --from-gcp or --from-acr")
	case o.fromConfig != "":
		if o.server != "" || o.username != "" || o.passwordStdin || o.passwordFile != "" || o.email != "" {
			return nil, usageErrorf("--from-docker-config cannot be combined with --server, --username, --email, --password-stdin or --password-file")
		}
		return configFromDockerFile(o.fromConfig, o.registries)
	case len(o.registries) > 0:
		return nil, usageErrorf("--registry only applies with --from-docker-config; use --server")
	default:
		return o.configFromFlags(s.In)
	}
}

// secretManifest drops the empty creationTimestamp a typed object marshals.
func secretManifest(s *corev1.Secret) map[string]any {
	meta := map[string]any{"name": s.Name}
	if s.Namespace != "" {
		meta["namespace"] = s.Namespace
	}
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "Secret",
		"metadata":   meta,
		"type":       string(s.Type),
		"data":       s.Data,
	}
}

func (o *secretCreateOptions) configFromFlags(stdin io.Reader) (*dockercfg.Config, error) {
	if o.server == "" {
		return nil, usageErrorf("--server is required (or use --from-docker-config)")
	}
	if _, err := keyring.NormalizeKey(o.server); err != nil {
		return nil, usageErrorf("--server: %v", err)
	}
	if o.username == "" {
		return nil, usageErrorf("--username is required")
	}
	if o.passwordStdin == (o.passwordFile != "") {
		return nil, usageErrorf("give exactly one of --password-stdin or --password-file")
	}
	password, err := readPassword(stdin, o.passwordStdin, o.passwordFile, "--password-file")
	if err != nil {
		return nil, err
	}
	cfg := &dockercfg.Config{Auths: map[string]dockercfg.Entry{
		dockercfg.ServerKey(o.server): {Username: o.username, Password: password, Email: o.email},
	}}
	if err := cfg.Validate(); err != nil {
		return nil, &usageError{err}
	}
	return cfg, nil
}

// configFromDockerFile loads a docker config with docker's own loader and
// resolves its credential helpers; a helper's failure is not a usage
// error, the file's is.
func configFromDockerFile(path string, registries []string) (*dockercfg.Config, error) {
	cfg, err := credhelpers.ReadDockerCLIConfig(path, registries)
	var helper *credhelpers.HelperError
	switch {
	case errors.As(err, &helper):
		return nil, err
	case err != nil:
		return nil, &usageError{err}
	}
	return cfg, nil
}

func (o *secretCreateOptions) applySecret(ctx context.Context, out io.Writer, name, namespace string, data []byte) error {
	cs, err := o.kube.clientset()
	if err != nil {
		return err
	}
	ac := corev1apply.Secret(name, namespace).
		WithType(corev1.SecretTypeDockerConfigJson).
		WithData(map[string][]byte{corev1.DockerConfigJsonKey: data})
	got, err := cs.CoreV1().Secrets(namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply secret %s/%s: %w", namespace, name, err)
	}
	fmt.Fprintf(out, "secret/%s applied in namespace %s\n", got.Name, got.Namespace)
	return nil
}
