// Command scale measures regcred at the size of large multi-tenant
// clusters, under the faults they see, on the harness's control plane:
// N namespaces × K ClusterRegistryCredentials at the default client
// limits.
//
//   - converge: time from applying the credentials to every Secret and
//     ServiceAccount in place, against what the client's own rate limits
//     allow for the writes made; writes against the minimum; how soon the
//     status says so after the last write; the leader's peak RSS. The API
//     server is killed -kill-apiserver-after in, and started again
//     -down later.
//   - restart: a manager started with everything in place: writes, and
//     time to Ready.
//   - handover: the leader killed with SIGKILL while a standby runs: time
//     until the standby has set up a namespace created at that moment.
//   - faults: a churn load (namespaces created and deleted, credentials
//     rotated, ServiceAccounts and Secrets edited by others) with etcd
//     restarted, etcd compacted under a restarted API server (watches 410
//     Gone, informers relist) and the leader killed; then every Secret,
//     ServiceAccount and status is checked, and the writes counted.
//   - soak (-soak): the churn for that long at full size, RSS and
//     goroutines sampled.
//
// Writes are counted from the API server's audit log, so a killed
// manager's count is not lost with it.
//
//	go run ./bench/scale -namespaces 10000 -credentials 3
//	go run ./bench/scale -namespaces 10000 -delivery Node -phases converge,restart
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

var (
	namespaces   = flag.Int("namespaces", 10000, "namespaces to fan out to")
	credentials  = flag.Int("credentials", 3, "ClusterRegistryCredentials selecting every namespace")
	delivery     = flag.String("delivery", "Secrets", "spec.delivery of the credentials: Secrets or Node")
	phases       = flag.String("phases", "converge,restart,handover,faults", "phases to run, in order (comma-separated; soak runs when -soak is set)")
	qps          = flag.Int("qps", 200, "manager --kube-api-qps (the default)")
	burst        = flag.Int("burst", 400, "manager --kube-api-burst (the default)")
	killAfter    = flag.Duration("kill-apiserver-after", 20*time.Second, "kill the API server this long into the fan-out (0: never)")
	down         = flag.Duration("down", 5*time.Second, "how long a killed component stays down")
	soak         = flag.Duration("soak", 0, "run the churn this long at full size, sampling RSS and goroutines")
	sampleEvery  = flag.Duration("sample", 30*time.Second, "soak sampling interval")
	pprofDir     = flag.String("pprof-dir", "", "write the leader's heap profile after converging here")
	managerFlags = flag.String("manager-flags", "", "more flags for regcred manager (space-separated)")
	gomemlimit   = flag.String("gomemlimit", "", "GOMEMLIMIT of the managers (by default a manager takes 90% of its cgroup's limit)")
	memoryLimit  = flag.String("memory-limit", "", "run each manager in a memory cgroup of this limit (192Mi, say: the chart's), as its container would; OOM kills are reported")
)

const regcredNS = "regcred-system"

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "scale: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "regcred-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *pprofDir != "" {
		if *pprofDir, err = filepath.Abs(*pprofDir); err != nil {
			return err
		}
	}
	b, err := newBench(ctx, dir)
	if err != nil {
		return err
	}
	defer b.stop()
	sctx, stopSupervisor := context.WithCancel(ctx)
	defer stopSupervisor()
	go b.supervise(sctx)
	fmt.Printf("# scale: %d namespaces x %d ClusterRegistryCredentials (delivery %s), manager QPS %d burst %d\n\n",
		*namespaces, *credentials, *delivery, *qps, *burst)
	if err := b.setup(ctx); err != nil {
		return err
	}
	for _, p := range strings.Split(*phases, ",") {
		var err error
		switch strings.TrimSpace(p) {
		case "converge":
			err = b.converge(ctx)
		case "restart":
			err = b.restart(ctx)
		case "handover":
			err = b.handover(ctx)
		case "faults":
			err = b.faults(ctx)
		case "":
		default:
			err = fmt.Errorf("unknown phase %q", p)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	if *soak > 0 {
		return b.soak(ctx)
	}
	return nil
}
