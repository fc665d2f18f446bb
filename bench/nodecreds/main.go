// Command nodecreds measures regcred's kubelet credential broker against a
// real kube-apiserver: Pods bound to fake nodes (no kubelet), their
// ServiceAccount tokens minted with the TokenRequest API for regcred's
// audience, and the broker, built as the manager builds it (TokenReview
// through the client, the bound Pod read live, Namespaces and
// ServiceAccounts from an informer cache), served over HTTPS on loopback.
// It holds fixed request rates with tokens reused (their TokenReview
// cached) and with a fresh token per request (-fresh: every request a
// TokenReview), and reports latency, errors and the API requests the
// broker made per request.
//
//	go run ./bench/nodecreds -rates 200,1000 -duration 10s
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/bench/internal/benchenv"
	"regcred.dev/regcred/bench/internal/parallel"
	"regcred.dev/regcred/bench/internal/stats"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/nodecreds"
)

var (
	rates       = flag.String("rates", "200,1000", "request rates (per second) to hold, comma-separated")
	duration    = flag.Duration("duration", 10*time.Second, "time at each rate and mode")
	pods        = flag.Int("pods", 200, "Pods (one token each when reused)")
	nodes       = flag.Int("nodes", 100, "fake nodes the Pods are spread over (the broker limits each node)")
	credentials = flag.Int("credentials", 50, "ClusterRegistryCredentials delivered Node in the catalogue (one covers the image)")
	modes       = flag.String("modes", "reused,fresh", "token modes: reused (TokenReview cached), fresh (a new token per request)")
	fresh       = flag.Bool("fresh", false, "only the fresh mode (the same as -modes fresh)")
	inflight    = flag.Int("max-inflight", 256, "most requests in flight")
	newConns    = flag.Bool("new-conns", false, "a new TLS connection per request, as the exec plugin makes (default: connections reused)")
	qps         = flag.Float64("qps", 200, "the broker's client QPS per resource (the manager's --kube-api-qps)")
	burst       = flag.Int("burst", 400, "the broker's client burst (the manager's --kube-api-burst)")
	nodeQPS     = flag.Float64("node-qps", 0, "broker NodeQPS (0: its default, 20 per node)")
	nodeBurst   = flag.Int("node-burst", 0, "broker NodeBurst (0: its default)")
	reviewQPS   = flag.Float64("review-qps", 0, "broker ReviewQPS, TokenReviews of tokens not cached (0: its default, 100)")
	reviewBurst = flag.Int("review-burst", 0, "broker ReviewBurst (0: its default)")
)

const (
	benchNS   = "bench"
	benchSA   = "app"
	regcredNS = "regcred-system"
	image     = "registry.bench.example/team/app:1"
)

func main() {
	flag.Parse()
	if *fresh {
		*modes = "fresh"
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "nodecreds: %v\n", err)
		os.Exit(1)
	}
}

// staticSource renders every credential as one login for its registries,
// as the controller's renderer does from a cached Secret.
type staticSource struct{}

func (staticSource) NodeCredential(_ context.Context, c *credential.Credential) (*nodecreds.Rendered, error) {
	cfg := &dockercfg.Config{Auths: map[string]dockercfg.Entry{}}
	for _, r := range c.Spec.Registries {
		cfg.Auths[r] = dockercfg.Entry{Username: "robot-" + c.Name, Password: "bench-password"}
	}
	return &nodecreds.Rendered{Config: cfg}, nil
}

type podRef struct {
	name, uid, node string
}

func run() error {
	ctrl.SetLogger(logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, err := benchenv.ControlPlane()
	if err != nil {
		return err
	}
	defer cp.Stop()
	c := cp.Client
	t0 := time.Now()
	refs, err := setup(ctx, c)
	if err != nil {
		return err
	}
	admin := rest.CopyConfig(cp.Config)
	admin.QPS, admin.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	reused := make([]string, len(refs))
	for i, p := range refs {
		if reused[i], err = mint(ctx, cs, p); err != nil {
			return err
		}
	}
	fmt.Printf("# kubelet credential broker against kube-apiserver on loopback: %d Pods on %d fake nodes, %d ClusterRegistryCredentials (set up in %s)\n",
		len(refs), *nodes, *credentials+1, time.Since(t0).Round(time.Millisecond))

	counter := &requestCounter{counts: map[string]int64{}}
	srv, cl, err := serve(ctx, cp.Config, counter)
	if err != nil {
		return err
	}
	defer srv.Close()
	url := srv.URL + nodecreds.Path
	// Warm up: every reused token reviewed once, the connections open.
	for _, tok := range reused {
		if code, body, err := send(cl, url, body(tok)); err != nil || code != http.StatusOK {
			return fmt.Errorf("warm-up request: HTTP %d %s %v", code, body, err)
		}
	}
	fmt.Printf("# %d CPUs shared by the API server, etcd, the broker and the load; max in flight %d; %s per rate; connections %s\n",
		runtime.NumCPU(), *inflight, *duration, map[bool]string{false: "reused", true: "new per request"}[*newConns])
	fmt.Printf("# broker client QPS %.0f burst %d per resource; broker limits: node %s, TokenReviews of new tokens %s\n\n",
		*qps, *burst, limit(*nodeQPS, *nodeBurst, "20/s burst 40"), limit(*reviewQPS, *reviewBurst, "100/s burst 200"))
	fmt.Printf("| tokens | rate/s | achieved/s | p50 | p90 | p99 | max | 429 | other errors | TokenReviews/req | Pod GETs/req | other API req/req |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, mode := range strings.Split(*modes, ",") {
		mode = strings.TrimSpace(mode)
		for _, rs := range strings.Split(*rates, ",") {
			rate, err := strconv.Atoi(strings.TrimSpace(rs))
			if err != nil {
				return err
			}
			n := int(*duration / (time.Second / time.Duration(rate)))
			var bodies [][]byte
			switch mode {
			case "reused":
				for i := range n {
					bodies = append(bodies, body(reused[i%len(reused)]))
				}
			case "fresh":
				t1 := time.Now()
				toks, err := mintMany(ctx, cs, refs, n)
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "minted %d tokens in %s\n", n, time.Since(t1).Round(time.Millisecond))
				for _, tok := range toks {
					bodies = append(bodies, body(tok))
				}
			default:
				return fmt.Errorf("-modes: unknown mode %q", mode)
			}
			// Let the previous run's limits refill.
			time.Sleep(2 * time.Second)
			counter.reset()
			res := load(cl, url, bodies, rate)
			api := counter.snapshot()
			reqs := float64(len(bodies))
			other := int64(0)
			for k, v := range api {
				if k != "POST tokenreviews" && k != "get pods" {
					other += v
				}
			}
			fmt.Printf("| %s | %d | %.0f | %s | %s | %s | %s | %d | %d | %.2f | %.2f | %.2f |\n", mode, rate, res.achieved,
				res.pct(50), res.pct(90), res.pct(99), res.pct(100), res.limited, res.errors,
				float64(api["POST tokenreviews"])/reqs, float64(api["get pods"])/reqs, float64(other)/reqs)
			if len(res.firstErr) > 0 {
				fmt.Fprintf(os.Stderr, "%s %d/s: first error: %s\n", mode, rate, res.firstErr)
			}
		}
	}
	return nil
}

func limit(q float64, b int, def string) string {
	if q == 0 {
		return def + " (default)"
	}
	return fmt.Sprintf("%.0f/s burst %d", q, b)
}

// setup creates the namespace, the ServiceAccount, the fake nodes (a
// token bound to a Pod names its node, which must exist) and the Pods.
func setup(ctx context.Context, c client.Client) ([]podRef, error) {
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: regcredNS}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS, Labels: map[string]string{"bench": "yes"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: benchSA}},
	} {
		if err := c.Create(ctx, o); err != nil {
			return nil, err
		}
	}
	var nodeNames []string
	for i := range *nodes {
		nodeNames = append(nodeNames, fmt.Sprintf("node-%03d", i))
	}
	if err := parallel.Each(16, nodeNames, func(n string) error {
		return c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}})
	}); err != nil {
		return nil, err
	}
	names := make([]string, *pods)
	for i := range names {
		names[i] = fmt.Sprintf("app-%04d", i)
	}
	var mu sync.Mutex
	byName := map[string]podRef{}
	if err := parallel.Each(16, names, func(name string) error {
		i, _ := strconv.Atoi(strings.TrimPrefix(name, "app-"))
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name},
			Spec: corev1.PodSpec{ServiceAccountName: benchSA, NodeName: nodeNames[i%len(nodeNames)],
				Containers: []corev1.Container{{Name: "app", Image: image}}}}
		if err := c.Create(ctx, p); err != nil {
			return err
		}
		mu.Lock()
		byName[name] = podRef{name: name, uid: string(p.UID), node: p.Spec.NodeName}
		mu.Unlock()
		return nil
	}); err != nil {
		return nil, err
	}
	refs := make([]podRef, len(names))
	for i, n := range names {
		refs[i] = byName[n]
	}
	return refs, nil
}

// mint asks for the token the kubelet would: regcred's audience, bound to
// the Pod (the API server adds its node).
func mint(ctx context.Context, cs kubernetes.Interface, p podRef) (string, error) {
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(benchNS).CreateToken(ctx, benchSA, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{nodecreds.DefaultAudience}, ExpirationSeconds: &exp,
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.name, UID: types.UID(p.uid)}}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for Pod %s: %w", p.name, err)
	}
	return tr.Status.Token, nil
}

func mintMany(ctx context.Context, cs kubernetes.Interface, refs []podRef, n int) ([]string, error) {
	out := make([]string, n)
	idx := make([]string, n)
	for i := range idx {
		idx[i] = strconv.Itoa(i)
	}
	err := parallel.Each(32, idx, func(s string) error {
		i, _ := strconv.Atoi(s)
		tok, err := mint(ctx, cs, refs[i%len(refs)])
		out[i] = tok
		return err
	})
	return out, err
}

// serve builds the broker as the manager does and serves it over HTTPS
// on loopback.
func serve(ctx context.Context, base *rest.Config, counter *requestCounter) (*httptest.Server, *http.Client, error) {
	scheme, err := credential.Scheme()
	if err != nil {
		return nil, nil, err
	}
	cfg := rest.CopyConfig(base)
	cfg.QPS, cfg.Burst = float32(*qps), *burst
	cfg.UserAgent = "regcred-manager"
	cfg.WrapTransport = counter.wrap
	// The manager's client and API reader: uncached (the broker's Pod read
	// and TokenReview go to the API server).
	live, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, err
	}
	// The manager's cache, for Namespaces and ServiceAccounts.
	ca, err := cache.New(cfg, cache.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, err
	}
	for _, o := range []client.Object{&corev1.Namespace{}, &corev1.ServiceAccount{}} {
		if _, err := ca.GetInformer(ctx, o); err != nil {
			return nil, nil, err
		}
	}
	go func() { _ = ca.Start(ctx) }()
	if !ca.WaitForCacheSync(ctx) {
		return nil, nil, fmt.Errorf("the cache did not sync")
	}
	cat := credential.NewCatalogue(regcredNS)
	for i := range *credentials {
		cat.Put(crc(fmt.Sprintf("other-%02d", i), fmt.Sprintf("registry%02d.other.example", i)))
	}
	cat.Put(crc("bench", "registry.bench.example"))
	cat.MarkSynced()
	b, err := nodecreds.New(nodecreds.Deps{Catalogue: cat, Source: staticSource{}, Pods: live, Cached: ca,
		Review: func(ctx context.Context, r *authenticationv1.TokenReview) error { return live.Create(ctx, r) }, Log: logr.Discard()},
		nodecreds.Options{NodeQPS: *nodeQPS, NodeBurst: *nodeBurst, ReviewQPS: *reviewQPS, ReviewBurst: *reviewBurst})
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(nodecreds.Path, b)
	mux.Handle(nodecreds.HealthPath, b)
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = *inflight
	tr.ForceAttemptHTTP2 = true
	tr.TLSClientConfig.MinVersion = tls.VersionTLS12
	if *newConns {
		// As the plugin's one-shot client: HTTP/1.1, one handshake per
		// request.
		tr.DisableKeepAlives = true
		tr.ForceAttemptHTTP2 = false
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	return srv, &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

func crc(name, registry string) *v1alpha1.ClusterRegistryCredential {
	c := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Generation: 1}}
	c.Spec.Registries = []string{registry}
	c.Spec.Delivery = v1alpha1.DeliveryNode
	c.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsAll
	c.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: name}
	return c
}

func body(token string) []byte {
	b, _ := json.Marshal(credentialproviderv1.CredentialProviderRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: credentialproviderv1.SchemeGroupVersion.String(), Kind: "CredentialProviderRequest"},
		Image:    image, ServiceAccountToken: token})
	return b
}

type result struct {
	lat      []time.Duration
	achieved float64
	limited  int
	errors   int
	firstErr string
}

func (r *result) pct(p int) time.Duration { return stats.Percentile(r.lat, p, 10*time.Microsecond) }

// load sends bodies at a fixed rate (open loop: requests start on
// schedule, not when the previous one ends).
func load(cl *http.Client, url string, bodies [][]byte, rate int) *result {
	res := &result{}
	var mu sync.Mutex
	sem := make(chan struct{}, *inflight)
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i, b := range bodies {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			code, text, err := send(cl, url, b)
			el := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && code == http.StatusOK:
				res.lat = append(res.lat, el)
			case code == http.StatusTooManyRequests:
				res.limited++
			default:
				res.errors++
				if res.firstErr == "" {
					res.firstErr = fmt.Sprintf("HTTP %d %s %v", code, strings.TrimSpace(text), err)
				}
			}
		}()
	}
	wg.Wait()
	res.achieved = float64(len(res.lat)) / time.Since(start).Seconds()
	return res
}

func send(cl *http.Client, url string, b []byte) (int, string, error) {
	resp, err := cl.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, nodecreds.MaxBody))
	if err != nil {
		return resp.StatusCode, "", err
	}
	if resp.StatusCode == http.StatusOK {
		var r credentialproviderv1.CredentialProviderResponse
		if err := json.Unmarshal(data, &r); err != nil || len(r.Auth) != 1 {
			return 0, "", fmt.Errorf("answer without the credential (%d keys)", len(r.Auth))
		}
		return resp.StatusCode, "", nil
	}
	return resp.StatusCode, string(data), nil
}

// requestCounter counts the broker's API requests by verb and resource.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int64
}

func (r *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return benchenv.RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
		k := benchenv.Describe(req)
		r.mu.Lock()
		r.counts[k]++
		r.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

func (r *requestCounter) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts = map[string]int64{}
}

func (r *requestCounter) snapshot() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.counts))
	for k, v := range r.counts {
		out[k] = v
	}
	return out
}
