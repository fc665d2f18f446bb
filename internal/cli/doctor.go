package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/doctor"
	"regcred.dev/regcred/internal/registry"
)

type doctorOptions struct {
	kube             kubeFlags
	output           string
	check            bool
	timeout          time.Duration
	regcredNamespace string
	reg              *registryFlags
}

const doctorLong = `Explain every pull failure: for each container, init container, ephemeral
container and image volume the kubelet cannot pull (ErrImagePull,
ImagePullBackOff, InvalidImageName, ErrImageNeverPull, or a missing pull
Secret), read what the kubelet said, name the cause, and say why the Pod
has no working credential:

  causes     Unauthorized, Denied, NotFound, RateLimited, TLS, DNS,
             Connection, Timeout, InvalidImageName, NeverPull,
             MissingSecret, MalformedSecret, TokenExpired, Other
  diagnoses  which regcred credential covers the image and why it did not
             reach the Pod: the namespace is excluded or not selected,
             podInjection is disabled or opted out, the Pod predates the
             credential (the kubelet never re-reads a Pod's pull secrets),
             the ServiceAccount was patched after the Pod was made, the
             Secret is missing or someone else's, the source is invalid,
             the cloud token expired, the webhook was not called

Each finding ends with a command that fixes it. No secret value is printed.

Scope: the whole cluster by default; -n NAMESPACE for one namespace; or one
Pod or workload (pod/NAME, deploy/NAME, ...) in -n's namespace (default:
the context's).

With --check the doctor also tries the Pod's credentials against the
registry in the kubelet's order, as "regcred check" does, and shows Docker
Hub's remaining pulls; it is off by default because it talks to
registries.

Exit status: 0 when nothing fails to pull, 1 when something does, 2 on
invalid input (a bad flag, a Pod that does not exist).`

const doctorExample = `  # Everything stuck in ImagePullBackOff, cluster-wide.
  regcred doctor

  # One namespace, as JSON for a script.
  regcred doctor -n team-a -o json

  # A Deployment's Pods, also asking the registry.
  regcred doctor deploy/api -n team-a --check`

func newDoctorCommand(s Streams, reg *registryFlags) *cobra.Command {
	o := doctorOptions{reg: reg}
	cmd := &cobra.Command{
		Use:     "doctor [pod/NAME | deploy/NAME | sts/NAME | ds/NAME | job/NAME]",
		Short:   "Explain why Pods fail to pull their images, and how to fix it",
		Long:    doctorLong,
		Example: doctorExample,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("%s takes at most one KIND/NAME (got %d arguments); see %s --help", cmd.CommandPath(), len(args), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), s, args)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *doctorOptions) addFlags(fs *pflag.FlagSet) {
	o.kube.addFlags(fs, true)
	fs.StringVarP(&o.output, "output", "o", "text", "output format: text, json or yaml (the JSON schema is stable: apiVersion "+doctor.APIVersion+")")
	fs.BoolVar(&o.check, "check", false, "also try the Pods' credentials against the registries (network access to them)")
	o.reg.addCAFiles(fs, "ca-file", "with --check: PEM file of CA certificates to trust for registries, added to the system's (repeatable)")
	o.reg.addInsecure(fs, "with --check: allow plain HTTP registries")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Second, "with --check: time limit for each attempt")
	fs.StringVar(&o.regcredNamespace, "regcred-namespace", "regcred-system", "the namespace regcred runs in (it never syncs there)")
}

func (o *doctorOptions) run(ctx context.Context, s Streams, args []string) error {
	target, err := o.validate(args)
	if err != nil {
		return err
	}
	checker, err := o.checker()
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	snap, err := doctor.Collect(ctx, c, target, o.regcredNamespace)
	var nf *doctor.ErrNotFound
	if errors.As(err, &nf) {
		return &usageError{err}
	}
	if err != nil {
		return err
	}
	report := doctor.Diagnose(snap, target.String())
	if checker != nil {
		checker.Check(ctx, snap, report)
	}
	if o.output == "text" {
		err = doctor.WriteText(s.Out, report)
	} else {
		err = printObject(s.Out, o.output, report)
	}
	if err != nil {
		return err
	}
	if report.PodsFailing > 0 {
		return &silentError{code: exitFailure}
	}
	return nil
}

// validate checks the flags and names what to diagnose.
func (o *doctorOptions) validate(args []string) (doctor.Target, error) {
	if err := validateOutput(o.output, "text", "json", "yaml"); err != nil {
		return doctor.Target{}, err
	}
	if o.timeout <= 0 {
		return doctor.Target{}, usageErrorf("--timeout must be positive")
	}
	if len(args) == 0 {
		return doctor.Target{Namespace: o.kube.namespace}, nil
	}
	kind, name, err := parseKindName(args[0])
	if err != nil {
		return doctor.Target{}, err
	}
	return doctor.Target{Namespace: o.kube.resolvedNamespace(), Kind: kind, Name: name}, nil
}

// checker asks the registries with --check, nil without.
func (o *doctorOptions) checker() (*doctor.Checker, error) {
	if !o.check {
		return nil, nil
	}
	opts, err := o.reg.options()
	if err != nil {
		return nil, err
	}
	return &doctor.Checker{Options: append(opts, registry.WithTimeout(o.timeout))}, nil
}

func (o *doctorOptions) client() (client.Client, error) {
	cfg, err := o.kube.restConfig()
	if err != nil {
		return nil, err
	}
	scheme, err := credential.Scheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connect to the cluster: %w", err)
	}
	return c, nil
}

// parseKindName reads kubectl's KIND/NAME with its short names.
func parseKindName(arg string) (kind, name string, err error) {
	k, n, ok := strings.Cut(arg, "/")
	if !ok || k == "" || n == "" || strings.Contains(n, "/") {
		return "", "", usageErrorf("%q is not KIND/NAME (pod/NAME, deploy/NAME, sts/NAME, ds/NAME, rs/NAME, job/NAME)", arg)
	}
	switch strings.ToLower(k) {
	case "pod", "pods", "po":
		kind = "pod"
	case "deploy", "deployment", "deployments":
		kind = "deployment"
	case "sts", "statefulset", "statefulsets":
		kind = "statefulset"
	case "ds", "daemonset", "daemonsets":
		kind = "daemonset"
	case "rs", "replicaset", "replicasets":
		kind = "replicaset"
	case "job", "jobs":
		kind = "job"
	default:
		return "", "", usageErrorf("cannot diagnose %q: use pod, deploy, sts, ds, rs or job", k)
	}
	return kind, n, nil
}
