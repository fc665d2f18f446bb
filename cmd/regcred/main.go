// Command regcred wires private-registry pull credentials across a
// Kubernetes cluster. See `regcred --help`.
package main

import (
	"os"

	"regcred.dev/regcred/internal/cli"
)

func main() {
	os.Exit(cli.Execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
