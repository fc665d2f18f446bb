// Package cli holds regcred's cobra commands, one file per command. Commands
// are thin: parsing, output and exit codes live here, the work lives in the
// core packages the controller and webhook share.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Streams are where a command reads and writes; tests pass buffers.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// NewRootCommand builds the regcred command tree.
func NewRootCommand(s Streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "regcred",
		Short: "Pull credentials for private container registries, wired across a Kubernetes cluster",
		Long: `regcred makes image pulls from private registries just work across a cluster.

You declare one object per registry credential — a RegistryCredential in a
namespace, or a ClusterRegistryCredential for many namespaces — and regcred:

  * syncs a kubernetes.io/dockerconfigjson Secret into every selected namespace
    and keeps it in step when the source rotates,
  * adds it to the imagePullSecrets of the selected ServiceAccounts,
  * injects exactly the matching pull secrets into Pods at admission, and
  * rewrites images to mirrors for air-gapped clusters.

The CLI resolves which credentials the kubelet would try for an image and
checks them against the registry, naming the failure (Unauthorized, Denied,
NotFound, RateLimited, TLS, DNS, Connection, Timeout).

A credential's source is a Secret (dockerconfigjson, dockercfg or
basic-auth), which anything can write (a person, a CI job, External
Secrets), or a cloud token regcred refreshes itself (ECR, Artifact
Registry, ACR, a kubelet credential provider plugin). "regcred doctor"
explains a Pod stuck in ImagePullBackOff and prints the fix.

The same matching rules as the kubelet are used everywhere, so "regcred says it
matches" means "the kubelet will use it".

Also usable as a kubectl plugin: install the binary as kubectl-regcred and run
"kubectl regcred ...".`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	// One registry trust for the command that runs, built once.
	reg := &registryFlags{}
	root.AddCommand(newVersionCommand(), newResolveCommand(s), newCheckCommand(s, reg), newSecretCommand(s),
		newManagerCommand(s, reg), newManifestsCommand(s), newMirrorCommand(s, reg), newDoctorCommand(s, reg),
		newKubeletCredentialProviderCommand(s), newKubeletConfigCommand(s), newNodeAgentCommand(s))
	return root
}

// Execute runs regcred with args and returns the process exit code. Errors
// are printed as one line, never as a stack trace.
func Execute(args []string, in io.Reader, out, errOut io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	root := NewRootCommand(Streams{In: in, Out: out, Err: errOut})
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		var silent *silentError
		if errors.As(err, &silent) {
			return silent.code
		}
		fmt.Fprintf(errOut, "Error: %s\n", oneLine(err.Error()))
		var ec exitCoder
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return exitFailure
	}
	return 0
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// exitCoder is an error that asks for a specific exit code.
type exitCoder interface{ ExitCode() int }
