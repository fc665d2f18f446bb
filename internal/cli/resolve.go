package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/distribution/reference"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/kubecreds"
	"regcred.dev/regcred/internal/redact"
)

// resolveOutput is the stable JSON/YAML shape of `regcred resolve`. Scripts
// rely on it: never add a secret to it.
type resolveOutput struct {
	Image      string              `json:"image"`
	Candidates []resolvedCandidate `json:"candidates"`
}

type resolvedCandidate struct {
	Key      string `json:"key"`
	Username string `json:"username"`
	Source   string `json:"source"`
}

const resolveLong = `List the credentials the kubelet would try when pulling IMAGE, in the order
it tries them, using the kubelet's own matching rules: registry keys with
"*" globs per host label, exact ports, path prefixes, schemes and /v1/ /v2/
ignored, Docker Hub names normalized, and the index.docker.io fallback.

The kubelet puts all of a Pod's pull Secrets into one keyring and tries
every matching credential in reverse lexicographic order of the registry
key (not "most specific first"), then the node's own credentials.

Credentials come from any mix of:
  --pod NAMESPACE/NAME     the Pod's imagePullSecrets (reports Secrets that
                           are missing, of a type the kubelet ignores, or
                           malformed, and whether they came from the
                           Pod's ServiceAccount)
  --secret NAMESPACE/NAME  a pull Secret, as if listed in imagePullSecrets
  --docker-config FILE     a docker config file, as the node's own

With --pod and no IMAGE, every image the kubelet pulls for the Pod is
resolved: init containers, containers, ephemeral containers and image
volumes (-o json then prints a list).

Output never contains a password or token.`

const resolveExample = `  # Which credential will the kubelet use for this Pod's image?
  regcred resolve ghcr.io/acme/api:1.4 --pod prod/api-7d9c

  # Check a pull secret before you ship it.
  regcred resolve nginx --secret default/dockerhub -o json

  # Every image of a Pod, image volumes included.
  regcred resolve --pod prod/api-7d9c

  # Use a local docker config.
  regcred resolve registry.example.com/team/app --docker-config ~/.docker/config.json`

type resolveOptions struct {
	creds  credFlags
	output string
}

func newResolveCommand(s Streams) *cobra.Command {
	var o resolveOptions
	cmd := &cobra.Command{
		Use:     "resolve [IMAGE]",
		Short:   "List the credentials the kubelet would try for an image, in order",
		Long:    resolveLong,
		Example: resolveExample,
		Args:    o.validateArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), s, args)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *resolveOptions) addFlags(fs *pflag.FlagSet) {
	o.creds.addFlags(fs)
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
}

func (o *resolveOptions) validateArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 && o.creds.pod == "" {
		return usageErrorf("%s takes IMAGE, or --pod alone for every image of a Pod; see %s --help", cmd.CommandPath(), cmd.CommandPath())
	}
	if len(args) > 1 {
		return usageErrorf("%s takes one IMAGE (got %d arguments); see %s --help", cmd.CommandPath(), len(args), cmd.CommandPath())
	}
	return nil
}

func (o *resolveOptions) run(ctx context.Context, s Streams, args []string) error {
	if err := o.validate(args); err != nil {
		return err
	}
	set, err := o.creds.load(ctx)
	if err != nil {
		return err
	}
	printWarnings(s.Err, set)
	if set.Malformed != nil {
		return fmt.Errorf("%v: the kubelet fails every pull of a Pod that lists it", set.Malformed)
	}
	images := args
	if len(images) == 0 {
		images = kubecreds.Images(set.Pod.Pod)
	}
	outs := resolveImages(s.Err, set, images)
	if len(args) == 1 {
		if o.output != "table" {
			return printObject(s.Out, o.output, outs[0])
		}
		return printResolveTable(s.Out, outs[0], set)
	}
	return o.printAll(s.Out, set, outs)
}

// validate checks the flags and keys a cloud token by the image's registry.
func (o *resolveOptions) validate(args []string) error {
	if err := o.creds.validate(); err != nil {
		return err
	}
	if err := validateOutput(o.output, "table", "json", "yaml"); err != nil {
		return err
	}
	for _, img := range args {
		named, err := keyring.ParseImage(img)
		if err != nil {
			return &usageError{err}
		}
		o.creds.cloudKeys = append(o.creds.cloudKeys, reference.Domain(named))
	}
	return nil
}

// resolveImages resolves each image, warning about those it cannot.
func resolveImages(errOut io.Writer, set *kubecreds.Set, images []string) []resolveOutput {
	var outs []resolveOutput
	for _, img := range images {
		out, err := resolveImage(set, img)
		if err != nil {
			// An image the API server admitted but Docker's reference
			// grammar refuses: the kubelet reports InvalidImageName for it.
			fmt.Fprintf(errOut, "Warning: %s: %v\n", img, err)
			continue
		}
		outs = append(outs, out)
	}
	return outs
}

// printAll prints every image of a Pod: a list, or one table each.
func (o *resolveOptions) printAll(w io.Writer, set *kubecreds.Set, outs []resolveOutput) error {
	if o.output != "table" {
		if outs == nil {
			outs = []resolveOutput{}
		}
		return printObject(w, o.output, outs)
	}
	for i, out := range outs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := printResolveTable(w, out, set); err != nil {
			return err
		}
	}
	return nil
}

// resolveImage lists the candidates for one image, as the kubelet orders
// them.
func resolveImage(set *kubecreds.Set, img string) (resolveOutput, error) {
	image, err := keyring.NormalizeImage(img)
	if err != nil {
		return resolveOutput{}, err
	}
	repo, err := keyring.ParseImage(img)
	if err != nil {
		return resolveOutput{}, err
	}
	out := resolveOutput{Image: image, Candidates: []resolvedCandidate{}}
	for _, c := range set.Candidates(repo.Name()) {
		out.Candidates = append(out.Candidates, resolvedCandidate{Key: c.Key, Username: c.Username, Source: c.Origin})
	}
	return out, nil
}

func printResolveTable(w io.Writer, out resolveOutput, set *kubecreds.Set) error {
	fmt.Fprintf(w, "Image: %s\n", out.Image)
	if set.Pod != nil {
		origin := "set on the Pod"
		if set.Pod.FromServiceAccount {
			origin = "copied from ServiceAccount " + set.Pod.ServiceAccount
		}
		if len(set.Pod.Pod.Spec.ImagePullSecrets) == 0 {
			origin = "none"
		}
		fmt.Fprintf(w, "Pod imagePullSecrets: %s\n", redact.Printable(origin))
	}
	if len(out.Candidates) == 0 {
		fmt.Fprintln(w, "No credential matches: the kubelet pulls anonymously.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tKEY\tUSERNAME\tSOURCE")
	for i, c := range out.Candidates {
		// Keys, usernames and Secret names come from the cluster: whoever
		// writes them cannot rewrite the terminal.
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", i+1, redact.Printable(c.Key), redact.Printable(c.Username), redact.Printable(c.Source))
	}
	return tw.Flush()
}

func printWarnings(w io.Writer, set *kubecreds.Set) {
	for _, warn := range set.Warnings {
		fmt.Fprintf(w, "Warning: %s\n", redact.Printable(warn))
	}
}
