// Command webhookload measures regcred's Pod mutator over HTTPS on
// loopback, side by side with a no-op webhook on the same server stack
// (controller-runtime's webhook server, same TLS, same AdmissionReview
// decoding): throughput and latency at fixed request rates.
//
//	go run ./bench/webhookload -rates 500,1000,2000,4000 -duration 5s
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/bench/internal/stats"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/pki"
	"regcred.dev/regcred/internal/webhook"
)

var (
	rates    = flag.String("rates", "500,1000,2000,4000", "request rates (per second) to hold, comma-separated")
	duration = flag.Duration("duration", 5*time.Second, "time at each rate")
	inflight = flag.Int("max-inflight", 256, "most requests in flight (the API server's own limit is similar)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "webhookload: %v\n", err)
		os.Exit(1)
	}
}

type noop struct{}

func (noop) Handle(context.Context, admission.Request) admission.Response {
	return admission.Allowed("")
}

func run() error {
	ctrl.SetLogger(logr.Discard())
	dir, err := os.MkdirTemp("", "regcred-webhookload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ca, err := pki.NewCA("bench", time.Hour)
	if err != nil {
		return err
	}
	leaf, err := ca.IssueServing([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dir+"/tls.crt", leaf.CertPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(dir+"/tls.key", leaf.KeyPEM, 0o600); err != nil {
		return err
	}
	addr, err := stats.FreeAddr()
	if err != nil {
		return err
	}
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)

	h, err := handler()
	if err != nil {
		return err
	}
	srv := crwebhook.NewServer(crwebhook.Options{Host: "127.0.0.1", Port: port, CertDir: dir})
	srv.Register("/regcred", &admission.Webhook{Handler: h, RecoverPanic: ptr(true)})
	srv.Register("/noop", &admission.Webhook{Handler: noop{}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Start(ctx) }()

	body, err := reviewBody()
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.CertPool(), MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: *inflight, ForceAttemptHTTP2: true}
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := send(cl, base+"/noop", body); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook server did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Check the real handler answers with a patch.
	resp, err := send(cl, base+"/regcred", body)
	if err != nil || !strings.Contains(resp, `"patch"`) {
		return fmt.Errorf("regcred handler did not patch: %v %s", err, resp)
	}

	fmt.Printf("# webhook over HTTPS on loopback: typical Pod (5 containers + 1 init), 20 credentials, 5 mirror rules\n")
	fmt.Printf("# %d CPUs shared by the load generator and the server; max in flight %d; %s per rate\n\n", runtimeCPUs(), *inflight, *duration)
	fmt.Printf("| rate/s | webhook | achieved/s | p50 | p99 | max | errors |\n|---|---|---|---|---|---|---|\n")
	for _, rs := range strings.Split(*rates, ",") {
		rate, err := strconv.Atoi(strings.TrimSpace(rs))
		if err != nil {
			return err
		}
		var p99 [2]time.Duration
		for i, path := range []string{"/noop", "/regcred"} {
			res := load(cl, base+path, body, rate, *duration)
			p99[i] = res.pct(99)
			fmt.Printf("| %d | %s | %.0f | %s | %s | %s | %d |\n", rate, strings.TrimPrefix(path, "/"), res.achieved, res.pct(50), res.pct(99), res.pct(100), res.errors)
		}
		fmt.Printf("| %d | p99 ratio regcred/noop | | | %.2f | | |\n", rate, float64(p99[1])/float64(p99[0]))
	}
	return nil
}

type result struct {
	lat      []time.Duration
	achieved float64
	errors   int
}

func (r *result) pct(p int) time.Duration { return stats.Percentile(r.lat, p, 10*time.Microsecond) }

// load holds a fixed request rate (open loop: requests start on schedule,
// not when the previous one ends) for d.
func load(cl *http.Client, url string, body []byte, rate int, d time.Duration) *result {
	res := &result{}
	var mu sync.Mutex
	sem := make(chan struct{}, *inflight)
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	n := int(d / interval)
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			_, err := send(cl, url, body)
			el := time.Since(t0)
			mu.Lock()
			if err != nil {
				res.errors++
			} else {
				res.lat = append(res.lat, el)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.achieved = float64(len(res.lat)) / time.Since(start).Seconds()
	return res
}

func send(cl *http.Client, url string, body []byte) (string, error) {
	resp, err := cl.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return string(b), nil
}

func reviewBody() ([]byte, error) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app-7d9c", Namespace: "apps", Labels: map[string]string{"app": "web"}}}
	for i, img := range []string{"nginx:1.27", "registry03.example.com/team/api:2", "ghcr.io/acme/sidecar:1", "bitnami/redis:7", "registry.example.org/other:1"} {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c" + strconv.Itoa(i), Image: img})
	}
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "quay.io/acme/migrate:3"}}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "bench", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: "apps",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}},
	})
}

type ensured struct{}

func (ensured) EnsureSecret(context.Context, *credential.Entry, string) error { return nil }

// handler is the real mutator over an in-memory view of 20 credentials and
// 5 mirror rules (the steady state, where every Secret already exists).
func handler() (*webhook.Handler, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	objs := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"team": "a"}}}}
	for i := range 20 {
		c := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cred-%02d", i)}}
		c.Spec.Registries = []string{fmt.Sprintf("registry%02d.example.com", i), fmt.Sprintf("*.mirror%02d.example.com:5000/team", i)}
		c.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: c.Name}
		objs = append(objs, c)
	}
	harbor := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "harbor"}}
	harbor.Spec.Registries = []string{"harbor.internal"}
	harbor.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "harbor"}
	m := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "airgap"}}
	for _, src := range []string{"docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "docker.io/bitnami"} {
		m.Spec.Mirrors = append(m.Spec.Mirrors, v1alpha1.MirrorRule{Source: src, Mirror: "harbor.internal/" + src})
	}
	objs = append(objs, harbor, m)
	cat := credential.NewCatalogue("regcred-system")
	for _, o := range objs {
		cat.Put(o)
	}
	cat.MarkSynced()
	return &webhook.Handler{Reader: newMemReader(scheme, objs...), Catalogue: cat, Secrets: ensured{}, Log: logr.Discard()}, nil
}

func ptr[T any](v T) *T { return &v }
