package controller_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/controller"
	"regcred.dev/regcred/internal/testenv"
)

// A cache built as the manager builds it fills itself, from the real API
// server, with every ServiceAccount of a namespace holding more than a
// few pages of them, each trimmed. (envtest's etcd cannot stream initial
// lists, so this is the paged list, continue tokens and all.)
func TestCacheListsTenantObjectsInPages(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	cp := suite.ControlPlane(t)
	c := cp.Client
	ns := newNamespace(t, c, "paged", nil)
	const n = 37
	blob := strings.Repeat("b", 20<<10)
	for i := 0; i < n; i++ {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("sa-%02d", i),
			Annotations: map[string]string{"tenant.example.com/blob": blob, "regcred.dev/credential": "a"}}}
		if err := c.Create(bg, sa); err != nil {
			t.Fatal(err)
		}
	}
	opts := controller.CacheOptions()
	opts.Scheme = cp.Scheme
	opts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	cfg := rest.CopyConfig(cp.Config)
	lists := &listLog{}
	cfg.Wrap(lists.wrap)
	ca, err := cache.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, wait)
	defer cancel()
	go func() { _ = ca.Start(ctx) }()
	if !ca.WaitForCacheSync(ctx) {
		t.Fatal("cache not synced")
	}
	var got corev1.ServiceAccountList
	if err := ca.List(ctx, &got, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, sa := range got.Items {
		names[sa.Name] = true
		if _, ok := sa.Annotations["tenant.example.com/blob"]; ok || sa.Annotations["regcred.dev/credential"] != "a" {
			t.Errorf("%s not trimmed as the cache trims it", sa.Name)
		}
	}
	if len(names) != n {
		t.Errorf("the cache holds %d of the %d ServiceAccounts", len(names), n)
	}
	if pages := lists.pages("/serviceaccounts"); pages < 4 {
		t.Errorf("ServiceAccounts listed in %d pages of at most 10, want 4 or more: %v", pages, lists.get())
	}
}

// listLog records the paths and queries of the LIST requests a client
// sends.
type listLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *listLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTrip(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodGet && r.URL.Query().Get("watch") != "true" {
			l.mu.Lock()
			l.reqs = append(l.reqs, r.URL.Path+"?"+r.URL.RawQuery)
			l.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

func (l *listLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.reqs...)
}

// pages counts the lists of path with a limit of at most 10.
func (l *listLog) pages(path string) int {
	n := 0
	for _, r := range l.get() {
		u, err := url.Parse(r)
		if err != nil || !strings.HasSuffix(u.Path, path) {
			continue
		}
		if lim, err := strconv.Atoi(u.Query().Get("limit")); err == nil && lim > 0 && lim <= 10 {
			n++
		}
	}
	return n
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
