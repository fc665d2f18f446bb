// Command nodewrites counts the API writes regcred's manager makes to
// deliver 3 ClusterRegistryCredentials to N namespaces, once with delivery
// Secrets (a pull Secret per namespace and credential, ServiceAccounts
// patched) and once with delivery Node (the kubelet asks the broker: no
// copy anywhere). Each mode runs on its own fresh control plane with the
// real manager in this process; every request of the manager's client
// goes through a counting RoundTripper, and writes (POST, PUT, PATCH,
// DELETE) are reported by resource, to convergence.
//
// Writes per token refresh are not measured here: a refresh needs a cloud
// source; bench/tokenrefresh measures them for Secrets against the fake
// ECR.
//
//	go run ./bench/nodewrites -namespaces 1000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/bench/internal/benchenv"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/manager"
)

var (
	namespaces  = flag.Int("namespaces", 1000, "namespaces the credentials select")
	credentials = flag.Int("credentials", 3, "ClusterRegistryCredentials")
	modes       = flag.String("modes", "Secrets,Node", "deliveries to measure, comma-separated: Secrets, Node, Both")
	qps         = flag.Int("qps", 200, "manager --kube-api-qps")
	burst       = flag.Int("burst", 400, "manager --kube-api-burst")
	quiet       = flag.Duration("settle", 3*time.Second, "how long without a write counts as converged")
	child       = flag.String("child", "", "internal: measure this one delivery and print the outcome as JSON")
)

const regcredNS = "regcred-system"

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "nodewrites: %v\n", err)
		os.Exit(1)
	}
}

type outcome struct {
	Mode     v1alpha1.DeliveryMode
	Startup  map[string]int64
	Writes   map[string]int64
	Converge time.Duration
	Secrets  int
	Patched  int
}

func run() error {
	ctrl.SetLogger(logr.Discard())
	if *child != "" {
		o, err := measure(v1alpha1.DeliveryMode(*child))
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(o)
	}
	// Each delivery runs in a process of its own: a fresh control plane
	// and a manager whose controllers' names are not taken yet.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var rows []outcome
	for _, m := range strings.Split(*modes, ",") {
		args := []string{"-child", strings.TrimSpace(m)}
		flag.Visit(func(f *flag.Flag) {
			if f.Name != "child" && f.Name != "modes" {
				args = append(args, "-"+f.Name+"="+f.Value.String())
			}
		})
		cmd := exec.Command(self, args...)
		cmd.Stderr = os.Stderr
		data, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("delivery %s: %w", m, err)
		}
		var o outcome
		if err := json.Unmarshal(data, &o); err != nil {
			return fmt.Errorf("delivery %s: %w", m, err)
		}
		rows = append(rows, o)
	}
	fmt.Printf("# API writes by the manager: %d namespaces x %d ClusterRegistryCredentials (Secret sources), manager QPS %d burst %d, to convergence (no write for %s)\n\n",
		*namespaces, *credentials, *qps, *burst, *quiet)
	fmt.Printf("| delivery | converged in | API writes | by verb and resource | managed Secrets | ServiceAccounts patched | writes at start-up, before the credentials |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %d | %s | %d | %d | %s |\n", r.Mode, r.Converge.Round(time.Millisecond), sum(r.Writes), format(r.Writes), r.Secrets, r.Patched, format(r.Startup))
	}
	fmt.Printf("\nWrites per token refresh: not measured here (a refresh needs a cloud source; with delivery Node the broker answers from the token cache and writes nothing; see bench/tokenrefresh for Secrets).\n")
	return nil
}

func measure(mode v1alpha1.DeliveryMode) (*outcome, error) {
	switch mode {
	case v1alpha1.DeliverySecrets, v1alpha1.DeliveryNode, v1alpha1.DeliveryBoth:
	default:
		return nil, fmt.Errorf("unknown delivery (Secrets, Node or Both)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, err := benchenv.ControlPlane()
	if err != nil {
		return nil, err
	}
	defer cp.Stop()
	c := cp.Client
	t0 := time.Now()
	if _, err := benchenv.Namespaces(ctx, c, regcredNS, *namespaces, true); err != nil {
		return nil, err
	}
	for i := range *credentials {
		data, _ := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{host(i): {Username: fmt.Sprintf("robot-%d", i), Password: "bench-password"}}}).MarshalDockerConfigJSON()
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNS, Name: fmt.Sprintf("source-%d", i)},
			Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(os.Stderr, "%s: %d namespaces set up in %s\n", mode, *namespaces, time.Since(t0).Round(time.Millisecond))

	counter := &writeCounter{counts: map[string]int64{}}
	cfg := rest.CopyConfig(cp.Config)
	cfg.WrapTransport = counter.wrap
	mgr, err := manager.New(ctx, manager.Options{RestConfig: cfg, Namespace: regcredNS, MetricsAddr: "0", ProbeAddr: "0",
		QPS: float32(*qps), Burst: *burst})
	if err != nil {
		return nil, err
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = mgr.Start(ctx)
	}()
	defer func() { cancel(); <-stopped }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return nil, fmt.Errorf("the manager's cache did not sync")
	}
	counter.settle(*quiet)
	out := &outcome{Mode: mode, Startup: counter.take()}

	t1 := time.Now()
	for i := range *credentials {
		cr := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cred-%d", i)}}
		cr.Spec.Registries = []string{host(i)}
		cr.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: fmt.Sprintf("source-%d", i)}
		cr.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"bench": "yes"}}
		cr.Spec.Delivery = mode
		if err := c.Create(ctx, cr); err != nil {
			return nil, err
		}
	}
	if err := waitConverged(ctx, c, mode); err != nil {
		return nil, err
	}
	out.Converge = time.Since(t1)
	// Status writes that follow the last condition still count.
	counter.settle(*quiet)
	out.Writes = counter.take()
	if out.Secrets, out.Patched, err = copies(ctx, c); err != nil {
		return nil, err
	}
	return out, nil
}

func host(i int) string { return fmt.Sprintf("registry%d.bench.example", i) }

// waitConverged: every credential Ready for its generation and, when it
// delivers Secrets, synced to every namespace with every ServiceAccount
// patched.
func waitConverged(ctx context.Context, c client.Client, mode v1alpha1.DeliveryMode) error {
	deadline := time.Now().Add(15 * time.Minute)
	for time.Now().Before(deadline) {
		ready := 0
		for i := range *credentials {
			var cred v1alpha1.ClusterRegistryCredential
			if err := c.Get(ctx, client.ObjectKey{Name: fmt.Sprintf("cred-%d", i)}, &cred); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(cred.Status.Conditions, v1alpha1.ConditionReady)
			if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != cred.Generation {
				continue
			}
			if mode.ToSecrets() && cred.Status.Namespaces.Synced != int32(*namespaces) {
				continue
			}
			ready++
		}
		if ready == *credentials {
			if !mode.ToSecrets() {
				return nil
			}
			if _, patched, err := copies(ctx, c); err != nil {
				return err
			} else if patched >= *namespaces {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("did not converge in 15 minutes")
}

// copies counts regcred's Secrets in the tenant namespaces and the
// ServiceAccounts listing all of them.
func copies(ctx context.Context, c client.Client) (secrets, patched int, err error) {
	var sl corev1.SecretList
	if err := c.List(ctx, &sl, client.MatchingLabels{credential.LabelManaged: "true"}); err != nil {
		return 0, 0, err
	}
	var sas corev1.ServiceAccountList
	if err := c.List(ctx, &sas); err != nil {
		return 0, 0, err
	}
	for _, sa := range sas.Items {
		if strings.HasPrefix(sa.Namespace, "bench-") && len(sa.ImagePullSecrets) >= *credentials {
			patched++
		}
	}
	return len(sl.Items), patched, nil
}

// writeCounter counts the manager's writes by verb and resource.
type writeCounter struct {
	mu     sync.Mutex
	counts map[string]int64
	last   time.Time
}

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return benchenv.RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
		switch req.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			k := req.Method + " " + resource(req.URL.Path)
			w.mu.Lock()
			w.counts[k]++
			w.last = time.Now()
			w.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

// settle returns once no write was made for d.
func (w *writeCounter) settle(d time.Duration) {
	start := time.Now()
	for {
		w.mu.Lock()
		last := w.last
		w.mu.Unlock()
		if last.Before(start) {
			last = start
		}
		if time.Since(last) >= d {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *writeCounter) take() map[string]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.counts
	w.counts = map[string]int64{}
	return out
}

// resource is "secrets", "serviceaccounts", "clusterregistrycredentials/status"...
func resource(path string) string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		segs = segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		segs = segs[3:]
	default:
		return path
	}
	if len(segs) >= 3 && segs[0] == "namespaces" {
		segs = segs[2:]
	}
	switch len(segs) {
	case 0:
		return "?"
	case 1, 2:
		return segs[0]
	default:
		return segs[0] + "/" + segs[2]
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func format(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
