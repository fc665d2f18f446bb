package nodecreds

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
)

// countingReader counts the Gets of a reader (the live Pod reads).
type countingReader struct {
	client.Reader
	gets atomic.Int64
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets.Add(1)
	return c.Reader.Get(ctx, key, obj, opts...)
}

// benchEnv is the fixture plus a catalogue of realistic size: 50
// ClusterRegistryCredentials delivered to nodes, 20 RegistryCredentials
// in the Pod's namespace and 20 in others (never candidates).
func benchEnv(b *testing.B) (*env, *countingReader) {
	pods := &countingReader{}
	e := newEnv(b, Options{NodeQPS: 1e9, NodeBurst: 1 << 30, ReviewQPS: 1e9, ReviewBurst: 1 << 30}, func(e *env) {
		for i := range 50 {
			c := crc(fmt.Sprintf("cluster-%02d", i), v1alpha1.DeliveryNode, fmt.Sprintf("registry%02d.example.com", i), fmt.Sprintf("*.mirror%02d.example.com/team", i))
			e.cat.Put(c)
		}
		for i := range 20 {
			e.cat.Put(rc("apps", fmt.Sprintf("tenant-%02d", i), v1alpha1.DeliveryNode, fmt.Sprintf("tenant%02d.example.com", i)))
			e.cat.Put(rc(fmt.Sprintf("ns-%02d", i), "tenant", v1alpha1.DeliveryNode, "registry07.example.com"))
		}
		pods.Reader = e.client
	})
	// Rebuild with the counting Pod reader.
	b2, err := New(Deps{Catalogue: e.cat, Source: e.src, Pods: pods, Cached: e.client, Review: e.review.create},
		Options{NodeQPS: 1e9, NodeBurst: 1 << 30, ReviewQPS: 1e9, ReviewBurst: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	e.broker = b2
	return e, pods
}

const benchImage = "registry07.example.com/team/app:1.2.3"

func serveOnce(b *testing.B, h http.Handler, body []byte) {
	r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		b.Fatalf("HTTP %d %s", w.Code, w.Body)
	}
}

// BenchmarkServeHTTP is one request end to end in memory: decode, token
// check, the live Pod read (a fake client), the cached Namespace and
// ServiceAccount, the catalogue and the answer.
func BenchmarkServeHTTP(b *testing.B) {
	b.Run("review-hit", func(b *testing.B) {
		e, pods := benchEnv(b)
		body := requestBody(benchImage, e.tokens["apps/web"])
		serveOnce(b, e.broker, body)
		e.review.calls.Store(0)
		pods.gets.Store(0)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			serveOnce(b, e.broker, body)
		}
		b.StopTimer()
		b.ReportMetric(float64(e.review.calls.Load())/float64(b.N), "reviews/op")
		b.ReportMetric(float64(pods.gets.Load())/float64(b.N), "podgets/op")
	})
	b.Run("review-miss", func(b *testing.B) {
		e, pods := benchEnv(b)
		bodies := make([][]byte, b.N)
		exp := time.Now().Add(time.Hour)
		for i := range bodies {
			tok := jwt(exp)
			e.review.accept(tok, boundStatus("apps", "default", "web", "uid-apps-web", testNode))
			bodies[i] = requestBody(benchImage, tok)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			serveOnce(b, e.broker, bodies[i])
		}
		b.StopTimer()
		b.ReportMetric(float64(e.review.calls.Load())/float64(b.N), "reviews/op")
		b.ReportMetric(float64(pods.gets.Load())/float64(b.N), "podgets/op")
	})
	b.Run("review-hit-parallel", func(b *testing.B) {
		e, _ := benchEnv(b)
		body := requestBody(benchImage, e.tokens["apps/web"])
		serveOnce(b, e.broker, body)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				serveOnce(b, e.broker, body)
			}
		})
	})
}

// BenchmarkAuthFor is the answer's auth alone: three credentials cover
// the image at different depths, two more do not.
func BenchmarkAuthFor(b *testing.B) {
	repo := "registry07.example.com/team/app"
	target := parseTarget(repo)
	creds := []servedCredential{
		{origin: "a", Rendered: Rendered{Config: configOf("registry07.example.com", "host")}},
		{origin: "b", Rendered: Rendered{Config: configOf("registry07.example.com/team", "team")}},
		{origin: "c", Rendered: Rendered{Config: configOf("*.example.com", "glob")}},
		{origin: "d", Rendered: Rendered{Config: configOf("other.example.com", "other")}},
		{origin: "e", Rendered: Rendered{Config: configOf("registry08.example.com", "other2")}},
	}
	b.ReportAllocs()
	for range b.N {
		auth, _ := authFor(repo, target, creds)
		if len(auth) != 3 {
			b.Fatalf("auth %v", auth)
		}
	}
}

// BenchmarkCovering is the catalogue's part of a request.
func BenchmarkCovering(b *testing.B) {
	e, _ := benchEnv(b)
	target := parseTarget("registry07.example.com/team/app")
	b.ReportAllocs()
	for range b.N {
		n := 0
		for _, en := range e.cat.Covering("apps", target) {
			if en.DeliversToNodes() {
				n++
			}
		}
		if n != 1 {
			b.Fatalf("%d covering", n)
		}
	}
}
