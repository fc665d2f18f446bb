// Command admission measures Pod creation through a real API server with
// no Pod mutation, with regcred's webhook, and with the
// MutatingAdmissionPolicies regcred generates, at several credential
// counts: the latency of each create (dry run, so nothing is stored and
// the measure is admission plus validation) and the API server's CPU time
// per Pod, from /proc.
//
//	go run ./bench/admission -credentials 20,100 -pods 2000 -concurrency 8
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/bench/internal/benchenv"
	"regcred.dev/regcred/bench/internal/stats"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/manager"
	"regcred.dev/regcred/internal/manager/inprocess"
	"regcred.dev/regcred/internal/testenv/controlplane"
)

var (
	counts      = flag.String("credentials", "20,100", "ClusterRegistryCredential counts, comma-separated")
	pods        = flag.Int("pods", 2000, "Pods created (dry run) per measurement")
	concurrency = flag.Int("concurrency", 8, "creates in flight")
)

const regcredNS = "regcred-system"

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "admission: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	cp, err := benchenv.ControlPlane()
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	ctx := context.Background()
	c := cp.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: regcredNS}}); err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}); err != nil {
		return err
	}
	pid, err := cp.PID(controlplane.APIServer)
	if err != nil {
		return err
	}
	// The manager runs in this process: its CPU (the webhook's) is this
	// process's less the client's, which the "none" rows show.
	fmt.Printf("%-12s %-8s %8s %8s %8s %10s %16s %16s\n", "credentials", "mode", "p50", "p99", "max", "pods/s", "apiserver CPU/Pod", "this process/Pod")
	have := 0
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-credentials: %w", err)
		}
		for ; have < n; have++ {
			if err := addCredential(ctx, c, have); err != nil {
				return err
			}
		}
		for _, mode := range []string{"none", manager.PodInjectionWebhook, manager.PodInjectionPolicy} {
			stop, err := start(ctx, cp.Config, c, mode)
			if err != nil {
				return fmt.Errorf("%s: %w", mode, err)
			}
			r, err := measure(ctx, c, pid, n)
			stop()
			if err != nil {
				return fmt.Errorf("%s at %d: %w", mode, n, err)
			}
			fmt.Printf("%-12d %-8s %8s %8s %8s %10.0f %16s %16s\n", n, mode, r.p50, r.p99, r.max, r.rate, r.cpu, r.self)
		}
	}
	return nil
}

// addCredential adds credential i: two registry keys of its own, one a
// glob, and no ServiceAccount patch.
func addCredential(ctx context.Context, c client.Client, i int) error {
	name := fmt.Sprintf("cred-%03d", i)
	data, _ := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{"example.com": {Username: "u", Password: "p"}}}).MarshalDockerConfigJSON()
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNS, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	cr := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: name}}
	cr.Spec.Registries = []string{fmt.Sprintf("registry-%03d.example.com", i), fmt.Sprintf("*.mirror-%03d.example.net:5000/team", i)}
	cr.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: name}
	cr.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
	return c.Create(ctx, cr)
}

// start runs the manager in a mode (none: no manager, no mutation) and
// waits until a probe Pod is injected through it.
func start(ctx context.Context, cfg *rest.Config, c client.Client, mode string) (func(), error) {
	if mode == "none" {
		return func() {}, nil
	}
	mctx, cancel := context.WithCancel(ctx)
	dir, err := os.MkdirTemp("", "regcred-bench-admission-")
	if err != nil {
		cancel()
		return nil, err
	}
	done, err := inprocess.Start(mctx, cfg, inprocess.Options{Namespace: regcredNS, CertDir: dir, PodInjection: mode})
	stop := func() {
		cancel()
		if done != nil {
			<-done
		}
		_ = os.RemoveAll(dir)
		// A webhook mode leaves its registration; the next mode must not
		// meet it (a policy-mode manager removes it, "none" does not).
		_ = c.DeleteAllOf(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{}, client.MatchingLabels{"app.kubernetes.io/managed-by": "regcred"})
		_ = c.DeleteAllOf(ctx, &admissionregistrationv1.MutatingAdmissionPolicyBinding{}, client.MatchingLabels{"regcred.dev/pod-injection": "true"})
		_ = c.DeleteAllOf(ctx, &admissionregistrationv1.MutatingAdmissionPolicy{}, client.MatchingLabels{"regcred.dev/pod-injection": "true"})
	}
	if err != nil {
		stop()
		return nil, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		p := benchPod(0)
		if err := c.Create(ctx, p, client.DryRunAll); err == nil && len(p.Spec.ImagePullSecrets) == 1 {
			return stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("no injection through %s within 2 minutes", mode)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// benchPod has two containers, one image of credential i's registry and
// one of Docker Hub, and an init container.
func benchPod(i int) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: "bench"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Image: "busybox:1.36"}},
		Containers: []corev1.Container{
			{Name: "app", Image: fmt.Sprintf("registry-%03d.example.com/team/app:1", i)},
			{Name: "sidecar", Image: "nginx:1.27"},
		}}}
}

type result struct {
	p50, p99, max time.Duration
	rate          float64
	cpu, self     time.Duration
}

func measure(ctx context.Context, c client.Client, pid, creds int) (*result, error) {
	lat := make([]time.Duration, *pods)
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	cpu0, err := cpuTime(pid)
	if err != nil {
		return nil, err
	}
	self0, err := cpuTime(os.Getpid())
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := benchPod(i % creds)
				t0 := time.Now()
				err := c.Create(ctx, p, client.DryRunAll)
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < *pods; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(begin)
	cpu1, err := cpuTime(pid)
	if err != nil {
		return nil, err
	}
	self1, err := cpuTime(os.Getpid())
	if err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return &result{p50: stats.Percentile(lat, 50, 10*time.Microsecond), p99: stats.Percentile(lat, 99, 10*time.Microsecond),
		max: stats.Percentile(lat, 100, 10*time.Microsecond), rate: float64(*pods) / elapsed.Seconds(),
		cpu: ((cpu1 - cpu0) / time.Duration(*pods)).Round(time.Microsecond), self: ((self1 - self0) / time.Duration(*pods)).Round(time.Microsecond)}, nil
}

// cpuTime is a process's user and system CPU time, from /proc/PID/stat
// (in clock ticks of 1/100 s).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
