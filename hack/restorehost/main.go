// Command restorehost puts the host back as it was before a test cluster
// whose harness died without stopping it (killed by a timeout, or by
// hand): it stops what is left of that cluster by PID and restores
// sysctls, iptables, mounts, cgroups and the bridge. The next cluster's
// start does the same by itself; `make restore-host` runs this.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"regcred.dev/regcred/internal/testenv/testcluster"
)

func main() {
	wait := flag.Duration("wait", time.Minute, "how long to wait for a running cluster to stop first")
	flag.Parse()
	if err := testcluster.RestoreHost(*wait); err != nil {
		fmt.Fprintf(os.Stderr, "restorehost: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("host restored")
}
