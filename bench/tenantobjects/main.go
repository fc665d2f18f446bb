// Command tenantobjects measures what objects a tenant may write cost the
// manager's memory: one namespace holding ServiceAccounts with large
// annotations and Secrets of any size that carry regcred's label (anyone
// may set it). It starts the local control plane, creates the objects,
// then starts `regcred manager` (its informers list them all at once) and
// reads the manager's RSS and peak RSS from /proc. Everything listens on
// loopback.
//
//	go run ./bench/tenantobjects                      # the tree's manager
//	go run ./bench/tenantobjects -bin /tmp/regcred    # another build of it
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/bench/internal/benchenv"
	"regcred.dev/regcred/bench/internal/parallel"
)

var (
	bin             = flag.String("bin", "", "regcred binary to measure (default: build ./cmd/regcred)")
	serviceAccounts = flag.Int("serviceaccounts", 400, "ServiceAccounts in the tenant namespace")
	annotationKiB   = flag.Int("annotation-kib", 250, "size of each ServiceAccount's annotation (the API allows 256 KiB in all)")
	secrets         = flag.Int("secrets", 100, "Secrets labelled regcred.dev/managed=true in the tenant namespace")
	secretKiB       = flag.Int("secret-kib", 1000, "size of each labelled Secret's data (the API allows 1 MiB)")
	settle          = flag.Duration("settle", 150*time.Second, "how long to wait, after the first reading, for the runtime to give back what it freed")
)

const (
	regcredNS = "regcred-system"
	tenantNS  = "tenant"
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "tenantobjects: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "regcred-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	exe, err := binary(dir)
	if err != nil {
		return err
	}
	cp, err := benchenv.ControlPlane()
	if err != nil {
		return err
	}
	defer cp.Stop()
	c := cp.Client
	for _, ns := range []string{regcredNS, tenantNS} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	fmt.Printf("# tenant-written objects: %d ServiceAccounts x %d KiB annotations, %d labelled Secrets x %d KiB, in one namespace\n\n",
		*serviceAccounts, *annotationKiB, *secrets, *secretKiB)

	m, err := benchenv.StartManager(exe, cp.Kubeconfig, regcredNS, dir)
	if err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	idle, idleHWM := m.RSS(), m.HWM()
	if err := m.Stop(); err != nil {
		return err
	}
	fmt.Printf("manager on an empty cluster: RSS %s (peak %s)\n", benchenv.MiB(idle), benchenv.MiB(idleHWM))

	t0 := time.Now()
	if err := createLoad(ctx, c); err != nil {
		return err
	}
	fmt.Printf("created the objects in %s\n", time.Since(t0).Round(time.Millisecond))

	m, err = benchenv.StartManager(exe, cp.Kubeconfig, regcredNS, dir)
	if err != nil {
		return err
	}
	time.Sleep(15 * time.Second) // initial lists and a reconcile of every namespace
	rss, hwm, heap := m.RSS(), m.HWM(), m.Heap()
	fmt.Printf("manager with them, 15 s after start: RSS %s, peak %s; Go heap in use %s\n", benchenv.MiB(rss), benchenv.MiB(hwm), benchenv.MiB(heap))
	// The Go runtime forces a collection every 2 minutes and returns the
	// freed memory to the system in the background: what stays is what
	// the cache holds.
	time.Sleep(*settle)
	rss, hwm, heap = m.RSS(), m.HWM(), m.Heap()
	if err := m.Stop(); err != nil {
		return err
	}
	var left corev1.SecretList
	if err := c.List(ctx, &left, client.InNamespace(tenantNS)); err != nil {
		return err
	}
	fmt.Printf("manager with them, %s later: RSS %s, peak %s; Go heap in use %s; labelled Secrets left in place %d of %d\n",
		*settle, benchenv.MiB(rss), benchenv.MiB(hwm), benchenv.MiB(heap), len(left.Items), *secrets)
	return nil
}

// binary is the regcred executable to run: -bin, or one built from the tree.
func binary(dir string) (string, error) {
	if *bin != "" {
		return *bin, nil
	}
	return benchenv.BuildRegcred(dir)
}

// createLoad writes what a namespace admin may write.
func createLoad(ctx context.Context, c client.Client) error {
	annotation := strings.Repeat("a", *annotationKiB<<10)
	names := make([]string, *serviceAccounts)
	for i := range names {
		names[i] = fmt.Sprintf("sa-%04d", i)
	}
	if err := parallel.Each(4, names, func(name string) error {
		return c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: name,
			Annotations: map[string]string{"tenant.example.com/blob": annotation}}})
	}); err != nil {
		return err
	}
	payload := []byte(strings.Repeat("s", *secretKiB<<10))
	names = make([]string, *secrets)
	for i := range names {
		names[i] = fmt.Sprintf("labelled-%04d", i)
	}
	return parallel.Each(4, names, func(name string) error {
		return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: name,
			Labels: map[string]string{"regcred.dev/managed": "true"}}, Data: map[string][]byte{"blob": payload}})
	})
}
