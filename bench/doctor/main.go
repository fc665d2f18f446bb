// Command doctor measures `regcred doctor` on a big cluster: N namespaces
// with a running Pod each, F Pods failing to pull (waiting on
// ImagePullBackOff, with the kubelet's Warning Events), and credentials
// covering their registry. It reports the time of a whole-cluster
// diagnosis and the API requests it made, by verb and resource.
//
//	go run ./bench/doctor -namespaces 1000 -failing 50
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/bench/internal/benchenv"
	"regcred.dev/regcred/bench/internal/parallel"
	"regcred.dev/regcred/internal/controller"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/doctor"
	"regcred.dev/regcred/internal/kubeletmsg"
	"regcred.dev/regcred/internal/testenv/controlplane"
)

var (
	namespaces = flag.Int("namespaces", 1000, "namespaces, each with a running Pod")
	failing    = flag.Int("failing", 50, "Pods failing to pull, one per namespace")
	runs       = flag.Int("runs", 5, "diagnoses to time")
	events     = flag.Int("events", 5000, "kubelet pull-failure Events for the manager's Event watch (0: skip that part)")
	unrelated  = flag.Int("unrelated-events", 20000, "other Events (Normal, and Warnings of other reasons) the watch must not hold")
)

const (
	regcredNS = "regcred-system"
	registry  = "registry.example:5000"
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "doctor: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	cp, err := benchenv.ControlPlane()
	if err != nil {
		return err
	}
	defer cp.Stop()
	c := cp.Client
	if *failing > *namespaces {
		return fmt.Errorf("-failing %d is more than -namespaces %d", *failing, *namespaces)
	}

	t0 := time.Now()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: regcredNS}}); err != nil {
		return err
	}
	for i := range 3 {
		cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cred-%d", i)}}
		cred.Spec.Registries = []string{fmt.Sprintf("registry%d.example", i)}
		if i == 0 {
			cred.Spec.Registries = []string{registry}
		}
		cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "source"}
		if err := c.Create(ctx, cred); err != nil {
			return err
		}
	}
	idx := make([]string, *namespaces)
	for i := range idx {
		idx[i] = strconv.Itoa(i)
	}
	if err := parallel.Each(32, idx, func(s string) error {
		i, _ := strconv.Atoi(s)
		return populate(ctx, c, fmt.Sprintf("ns-%04d", i), i < *failing)
	}); err != nil {
		return err
	}
	fmt.Printf("# regcred doctor on %d namespaces, %d running Pods, %d failing Pods, 3 ClusterRegistryCredentials (set up in %s)\n\n",
		*namespaces, *namespaces-*failing, *failing, time.Since(t0).Round(time.Millisecond))

	var times []time.Duration
	var counts map[string]int
	for range *runs {
		counter := &requestCounter{counts: map[string]int{}}
		cfg := rest.CopyConfig(cp.Config)
		cfg.QPS, cfg.Burst = -1, 0 // as kubectl: no client-side limit
		cfg.WrapTransport = counter.wrap
		scheme, err := credential.Scheme()
		if err != nil {
			return err
		}
		dc, err := client.New(cfg, client.Options{Scheme: scheme})
		if err != nil {
			return err
		}
		start := time.Now()
		snap, err := doctor.Collect(ctx, dc, doctor.Target{}, regcredNS)
		if err != nil {
			return err
		}
		report := doctor.Diagnose(snap, "cluster")
		times = append(times, time.Since(start))
		if report.PodsFailing != *failing || report.PodsChecked != *namespaces {
			return fmt.Errorf("report: %d of %d Pods failing, want %d of %d", report.PodsFailing, report.PodsChecked, *failing, *namespaces)
		}
		counts = counter.counts
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	total := 0
	var lines []string
	for k, n := range counts {
		total += n
		lines = append(lines, fmt.Sprintf("  %-40s %d", k, n))
	}
	sort.Strings(lines)
	fmt.Printf("whole-cluster diagnosis, %d runs: median %s, min %s, max %s\n", len(times), times[len(times)/2].Round(time.Millisecond), times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
	fmt.Printf("API requests per diagnosis: %d\n%s\n", total, strings.Join(lines, "\n"))
	if *events > 0 {
		return eventWatch(ctx, cp)
	}
	return nil
}

// eventWatch measures what the manager's pull-failure Event watch costs:
// the Go heap in use with E pull-failure Events and U other Events in the
// cluster, before and after the watch has listed them; then checks that
// it counts new Events once each.
func eventWatch(ctx context.Context, cp *controlplane.ControlPlane) error {
	c := cp.Client
	idx := make([]string, *events+*unrelated)
	for i := range idx {
		idx[i] = strconv.Itoa(i)
	}
	t0 := time.Now()
	if err := parallel.Each(32, idx, func(s string) error {
		i, _ := strconv.Atoi(s)
		return c.Create(ctx, benchEvent(i, i < *events))
	}); err != nil {
		return err
	}
	fmt.Printf("\n## the manager's pull-failure Event watch: %d pull-failure Events, %d other Events (created in %s)\n", *events, *unrelated, time.Since(t0).Round(time.Millisecond))
	before := heapInUse()
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return err
	}
	cat, err := catalogueOf(ctx, c)
	if err != nil {
		return err
	}
	w := &controller.PullFailureWatch{Clientset: cs, Catalogue: cat, Log: logr.Discard()}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = w.Start(wctx) }()
	for !w.HasSynced() {
		time.Sleep(50 * time.Millisecond)
	}
	after := heapInUse()
	fmt.Printf("Go heap in use: %s before the watch, %s with it (+%s, %.0f bytes per pull-failure Event)\n",
		mib(before), mib(after), mib(after-before), float64(after-before)/float64(*events))

	const fresh = 500
	base := counted()
	idx = idx[:fresh]
	if err := parallel.Each(32, idx, func(s string) error {
		i, _ := strconv.Atoi(s)
		return c.Create(ctx, benchEvent(*events+*unrelated+i, true))
	}); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for counted()-base < fresh && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("new pull-failure Events counted: %.0f of %d (the %d that existed before the watch are not counted)\n", counted()-base, fresh, *events)
	return nil
}

// catalogueOf compiles the cluster's credentials, as the manager's
// informers feed its catalogue.
func catalogueOf(ctx context.Context, c client.Client) (*credential.Catalogue, error) {
	var list v1alpha1.ClusterRegistryCredentialList
	if err := c.List(ctx, &list); err != nil {
		return nil, err
	}
	cat := credential.NewCatalogue("regcred-system")
	for i := range list.Items {
		cat.Put(&list.Items[i])
	}
	cat.MarkSynced()
	return cat, nil
}

func benchEvent(i int, pullFailure bool) *corev1.Event {
	ns := fmt.Sprintf("ns-%04d", i%*namespaces)
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bench.%d", i)},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "app", APIVersion: "v1"},
		Source:         corev1.EventSource{Component: "kubelet"}, Count: 1, FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now()}
	switch {
	case pullFailure:
		ev.Type, ev.Reason = corev1.EventTypeWarning, kubeletmsg.EventFailed
		ev.Message = fmt.Sprintf(`Failed to pull image "%s/team/app:%d": failed to resolve reference: pulling from host %s failed with status code [manifests 1]: 401 Unauthorized`, registry, i, registry)
	case i%2 == 0:
		ev.Type, ev.Reason, ev.Message = corev1.EventTypeNormal, "Pulled", strings.Repeat("Successfully pulled image. ", 10)
	default:
		ev.Type, ev.Reason, ev.Message = corev1.EventTypeWarning, "Unhealthy", strings.Repeat("Readiness probe failed: HTTP probe failed with statuscode: 503. ", 4)
	}
	return ev
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// counted sums regcred_image_pull_failures_total.
func counted() float64 {
	families, _ := metrics.Registry.Gather()
	total := 0.0
	for _, f := range families {
		if f.GetName() == "regcred_image_pull_failures_total" {
			for _, m := range f.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// populate makes a namespace with its default ServiceAccount and a Pod:
// running, or waiting on a failed pull with the kubelet's Events.
func populate(ctx context.Context, c client.Client, ns string, fail bool) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}); err != nil {
		return err
	}
	image := registry + "/team/app:1"
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
	if err := c.Create(ctx, pod); err != nil {
		return err
	}
	state := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
	phase := corev1.PodRunning
	msg := fmt.Sprintf(`Failed to pull image %q: failed to pull and unpack image %q: failed to resolve reference %q: pulling from host %s failed with status code [manifests 1]: 401 Unauthorized`, image, image, image, registry)
	if fail {
		phase = corev1.PodPending
		state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: kubeletmsg.WaitingImagePullBackOff, Message: "Back-off pulling image \"" + image + "\": ErrImagePull: 401 Unauthorized"}}
	}
	pod.Status = corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: image, State: state}}}
	if err := c.Status().Update(ctx, pod); err != nil {
		return err
	}
	if !fail {
		return nil
	}
	now := metav1.Now()
	for i, ev := range []struct{ reason, msg string }{{kubeletmsg.EventFailed, msg}, {kubeletmsg.EventFailed, "Error: ErrImagePull"}} {
		if err := c.Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("app.%d", i)},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "app", UID: pod.UID, APIVersion: "v1"},
			Reason:         ev.reason, Message: ev.msg, Type: corev1.EventTypeWarning, Source: corev1.EventSource{Component: "kubelet"},
			FirstTimestamp: now, LastTimestamp: now, Count: 3}); err != nil {
			return err
		}
	}
	return nil
}

// requestCounter counts requests by verb and resource path.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (r *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return benchenv.RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
		r.mu.Lock()
		r.counts[benchenv.Describe(req)]++
		r.mu.Unlock()
		return rt.RoundTrip(req)
	})
}
