package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/distribution/reference"
	"github.com/spf13/cobra"

	"regcred.dev/regcred/internal/doctor"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/registry"
)

type checkOutput struct {
	Image            string           `json:"image"`
	PullWouldSucceed bool             `json:"pullWouldSucceed"`
	Error            string           `json:"error,omitempty"`
	Attempts         []doctor.Attempt `json:"attempts"`
}

func newCheckCommand() *cobra.Command {
	var (
		flags    credFlags
		output   string
		caFile   string
		insecure bool
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check IMAGE",
		Short: "Try the credentials the kubelet would use against the registry, and say why a pull fails",
		Long: `Try the credentials the kubelet would use for IMAGE against its registry,
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
invalid input.`,
		Example: `  # Why is this Pod in ImagePullBackOff?
  regcred check ghcr.io/acme/api:1.4 --pod prod/api-7d9c

  # Does a robot account work before you roll it out?
  regcred check harbor.example.com/team/app:2.0 --secret regcred-system/harbor-robot

  # A registry with a private CA.
  regcred check registry.internal:5000/app:1 --docker-config auth.json --ca-file ca.pem`,
		Args: exactArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flags.validate(); err != nil {
				return err
			}
			if err := validateOutput(output, "table", "json", "yaml"); err != nil {
				return err
			}
			if timeout <= 0 {
				return usageErrorf("--timeout must be positive")
			}
			image, err := keyring.NormalizeImage(args[0])
			if err != nil {
				return &usageError{err}
			}
			named, _ := keyring.ParseImage(args[0])
			opts := []registry.Option{registry.WithTimeout(timeout), registry.WithInsecure(insecure)}
			if caFile != "" {
				pool, err := caPool([]string{caFile})
				if err != nil {
					return err
				}
				opts = append(opts, registry.WithRootCAs(pool))
			}
			flags.cloudKeys = []string{reference.Domain(named)}
			set, err := flags.load(cmd.Context())
			if err != nil {
				return err
			}
			printWarnings(cmd.ErrOrStderr(), set)

			out := checkOutput{Image: image, Attempts: []doctor.Attempt{}}
			if set.malformed != nil {
				out.Error = fmt.Sprintf("%v: the kubelet fails every pull of a Pod that lists it, before contacting the registry", set.malformed)
			} else {
				res := doctor.Try(cmd.Context(), image, set.candidates(named.Name()), opts...)
				out.PullWouldSucceed, out.Attempts = res.PullWouldSucceed, res.Attempts
			}

			if output == "table" {
				printCheckTable(cmd.OutOrStdout(), out)
			} else if err := printObject(cmd.OutOrStdout(), output, out); err != nil {
				return err
			}
			if !out.PullWouldSucceed {
				return &silentError{code: exitFailure}
			}
			return nil
		},
	}
	flags.addFlags(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	cmd.Flags().StringVar(&caFile, "ca-file", "", "PEM file of CA certificates to trust for the registry, added to the system's")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP, for a registry the nodes reach without TLS")
	cmd.Flags().DurationVar(&timeout, "timeout", 20*time.Second, "time limit for each attempt")
	return cmd
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
