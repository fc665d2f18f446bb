package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/distribution/reference"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"regcred.dev/regcred/internal/doctor"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/registry"
)

type checkOutput struct {
	Image            string             `json:"image"`
	PullWouldSucceed bool               `json:"pullWouldSucceed"`
	Error            string             `json:"error,omitempty"`
	Attempts         []registry.Attempt `json:"attempts"`
}

const checkLong = `Try the credentials the kubelet would use for IMAGE against its registry,
in the kubelet's order, the way a pull starts: ping /v2/, follow the
WWW-Authenticate challenge (basic, or a bearer token with
repository:NAME:pull scope), then HEAD the manifest. A HEAD does not count
against Docker Hub's pull rate limit.

Like the kubelet, check stops at the first credential that works, and goes
anonymous only when no credential matches. Each attempt is reported with
one of: OK, Unauthorized, Denied, NotFound, RateLimited, TLS, DNS,
Connection, Timeout, Other, and a hint.

Credentials come from --pod, --secret and --docker-config as for
"regcred resolve".

Exit status: 0 when the pull would succeed, 1 when it would fail, 2 on
invalid input.`

const checkExample = `  # Why is this Pod in ImagePullBackOff?
  regcred check ghcr.io/acme/api:1.4 --pod prod/api-7d9c

  # Does a robot account work before you roll it out?
  regcred check harbor.example.com/team/app:2.0 --secret regcred-system/harbor-robot

  # A registry with a private CA.
  regcred check registry.internal:5000/app:1 --docker-config auth.json --ca-file ca.pem`

type checkOptions struct {
	creds   credFlags
	output  string
	timeout time.Duration
	reg     *registryFlags
}

func newCheckCommand(s Streams, reg *registryFlags) *cobra.Command {
	o := checkOptions{reg: reg}
	cmd := &cobra.Command{
		Use:     "check IMAGE",
		Short:   "Try the credentials the kubelet would use against the registry, and say why a pull fails",
		Long:    checkLong,
		Example: checkExample,
		Args:    exactArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), s, args[0])
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *checkOptions) addFlags(fs *pflag.FlagSet) {
	o.creds.addFlags(fs)
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	o.reg.addCAFile(fs, "ca-file", "PEM file of CA certificates to trust for the registry, added to the system's")
	o.reg.addInsecure(fs, "allow plain HTTP, for a registry the nodes reach without TLS")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Second, "time limit for each attempt")
}

func (o *checkOptions) run(ctx context.Context, s Streams, arg string) error {
	image, named, err := o.validate(arg)
	if err != nil {
		return err
	}
	opts, err := o.reg.options()
	if err != nil {
		return err
	}
	o.creds.cloudKeys = []string{reference.Domain(named)}
	set, err := o.creds.load(ctx)
	if err != nil {
		return err
	}
	printWarnings(s.Err, set)
	out := checkOutput{Image: image, Attempts: []registry.Attempt{}}
	if set.Malformed != nil {
		out.Error = fmt.Sprintf("%v: the kubelet fails every pull of a Pod that lists it, before contacting the registry", set.Malformed)
	} else {
		res := registry.Try(ctx, image, set.Candidates(named.Name()), append(opts, registry.WithTimeout(o.timeout))...)
		out.PullWouldSucceed, out.Attempts = res.PullWouldSucceed, res.Attempts
	}
	if o.output == "table" {
		printCheckTable(s.Out, out)
	} else if err := printObject(s.Out, o.output, out); err != nil {
		return err
	}
	if !out.PullWouldSucceed {
		return &silentError{code: exitFailure}
	}
	return nil
}

// validate checks the flags and the image, returned normalized and parsed.
func (o *checkOptions) validate(arg string) (string, reference.Named, error) {
	if err := o.creds.validate(); err != nil {
		return "", nil, err
	}
	if err := validateOutput(o.output, "table", "json", "yaml"); err != nil {
		return "", nil, err
	}
	if o.timeout <= 0 {
		return "", nil, usageErrorf("--timeout must be positive")
	}
	image, err := keyring.NormalizeImage(arg)
	if err != nil {
		return "", nil, &usageError{err}
	}
	named, _ := keyring.ParseImage(arg)
	return image, named, nil
}

func printCheckTable(w io.Writer, out checkOutput) {
	fmt.Fprintf(w, "Image: %s\n", out.Image)
	if out.Error != "" {
		fmt.Fprintf(w, "Pull would fail: %s\n", doctor.Sanitize(out.Error))
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tKEY\tUSERNAME\tSOURCE\tRESULT")
	for i, a := range out.Attempts {
		// Keys and user names come from Secrets: a tab or an escape in
		// one must not break the table or the terminal.
		key, user, source := doctor.Sanitize(a.Key), doctor.Sanitize(a.Username), doctor.Sanitize(a.Source)
		if a.Anonymous {
			key, user, source = "-", "(anonymous)", "no credential matches"
		}
		result := string(a.Reason)
		if a.HTTPStatus != 0 {
			result += fmt.Sprintf(" (HTTP %d)", a.HTTPStatus)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", i+1, key, user, source, result)
	}
	_ = tw.Flush()
	for i, a := range out.Attempts {
		if a.Reason != registry.OK {
			fmt.Fprintf(w, "#%d %s: %s\n   hint: %s\n", i+1, a.Reason, doctor.Sanitize(a.Message), doctor.Sanitize(a.Hint))
		}
		if a.RateLimit != nil {
			fmt.Fprintf(w, "#%d rate limit: %d of %d pulls left (window %s)\n", i+1, a.RateLimit.Remaining, a.RateLimit.Limit, a.RateLimit.Window)
		}
	}
	if out.PullWouldSucceed {
		last := out.Attempts[len(out.Attempts)-1]
		fmt.Fprintf(w, "Pull would succeed with attempt #%d (manifest %s).\n", len(out.Attempts), last.Digest)
	} else {
		fmt.Fprintln(w, "Pull would fail: every attempt was refused.")
	}
}
