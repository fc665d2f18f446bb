package controller

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/pager"
)

// pagingServer answers lists of n ServiceAccounts with a large foreign
// annotation, in pages of the requested limit (the whole list without
// one), and records the requests. Before it serves a page it checks that
// every object of the pages it served before has been trimmed: only one
// page of full objects is in memory at a time.
type pagingServer struct {
	mu      sync.Mutex
	t       *testing.T
	n       int
	reqs    []metav1.ListOptions
	served  []*corev1.ServiceAccount
	watched bool
	// noStream refuses streamed initial lists, as an API server on etcd
	// without progress notifications does.
	noStream bool
}

func (s *pagingServer) ListWithContext(_ context.Context, o metav1.ListOptions) (runtime.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, o)
	for _, sa := range s.served {
		if _, ok := sa.Annotations["tenant.example.com/blob"]; ok {
			s.t.Errorf("page %d asked for while %s of an earlier page is still whole", len(s.reqs), sa.Name)
		}
	}
	start := 0
	if o.Continue != "" {
		start, _ = strconv.Atoi(o.Continue)
	}
	end := s.n
	if o.Limit > 0 && start+int(o.Limit) < s.n {
		end = start + int(o.Limit)
	}
	list := &corev1.ServiceAccountList{ListMeta: metav1.ListMeta{ResourceVersion: "100"}}
	if o.Continue != "" {
		list.ResourceVersion = "999" // later pages carry no snapshot of their own
	}
	for i := start; i < end; i++ {
		list.Items = append(list.Items, corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("sa-%03d", i), Namespace: "tenant",
			Annotations: map[string]string{"tenant.example.com/blob": strings.Repeat("a", 1<<10), "regcred.dev/credential": "x"},
		}})
	}
	for i := range list.Items {
		s.served = append(s.served, &list.Items[i])
	}
	if end < s.n {
		list.Continue = strconv.Itoa(end)
		remaining := int64(s.n - end)
		list.RemainingItemCount = &remaining
	}
	return list, nil
}

func (s *pagingServer) WatchWithContext(_ context.Context, o metav1.ListOptions) (watch.Interface, error) {
	if s.noStream && o.SendInitialEvents != nil {
		return nil, fmt.Errorf("a watch stream was requested by the client but the required storage feature RequestWatchProgress is disabled")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watched = true
	return watch.NewFake(), nil
}

// The reflector's fallback list (resourceVersion "0", which the watch
// cache answers whole) is asked for in pages of listPageSize, from the
// latest version; each page is trimmed before the next is asked for; the
// reflector's pager gets every object, trimmed, in one list at the first
// page's resourceVersion.
func TestPagedListTrimsEachPage(t *testing.T) {
	srv := &pagingServer{t: t, n: 3*listPageSize + 4}
	lw := &pagedListerWatcher{lw: srv, trim: tenantTrim(&corev1.ServiceAccount{})}
	p := pager.New(pager.SimplePageFunc(func(o metav1.ListOptions) (runtime.Object, error) {
		return lw.ListWithContext(context.Background(), o)
	}))
	got, paginated, err := p.ListWithAlloc(context.Background(), metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	if paginated {
		t.Error("the reflector's pager saw a paginated answer")
	}
	if len(srv.reqs) != 4 {
		t.Fatalf("%d requests, want 4 pages", len(srv.reqs))
	}
	for i, o := range srv.reqs {
		if o.Limit != listPageSize {
			t.Errorf("request %d: limit %d, want %d", i, o.Limit, listPageSize)
		}
		if o.ResourceVersion != "" || o.ResourceVersionMatch != "" {
			t.Errorf("request %d: resourceVersion %q match %q, want the latest", i, o.ResourceVersion, o.ResourceVersionMatch)
		}
	}
	list := got.(*corev1.ServiceAccountList)
	if len(list.Items) != srv.n || list.ResourceVersion != "100" || list.Continue != "" || list.RemainingItemCount != nil {
		t.Fatalf("got %d items at %q (continue %q), want %d at 100, whole", len(list.Items), list.ResourceVersion, list.Continue, srv.n)
	}
	for i, sa := range list.Items {
		if sa.Name != fmt.Sprintf("sa-%03d", i) {
			t.Errorf("item %d is %s", i, sa.Name)
		}
		if _, ok := sa.Annotations["tenant.example.com/blob"]; ok || sa.Annotations["regcred.dev/credential"] != "x" {
			t.Errorf("%s not trimmed as the cache trims it: %v", sa.Name, sa.Annotations)
		}
	}
}

// A relist at a known version keeps its meaning (not older than it) when
// it is paged, and a caller's own continue token is passed through.
func TestPagedListKeepsVersionsAndCallerPaging(t *testing.T) {
	srv := &pagingServer{t: t, n: 5}
	lw := &pagedListerWatcher{lw: srv, trim: tenantTrim(&corev1.ServiceAccount{})}
	if _, err := lw.List(metav1.ListOptions{ResourceVersion: "42"}); err != nil {
		t.Fatal(err)
	}
	if o := srv.reqs[0]; o.ResourceVersion != "42" || o.ResourceVersionMatch != metav1.ResourceVersionMatchNotOlderThan {
		t.Errorf("relist at 42 asked for %q match %q", o.ResourceVersion, o.ResourceVersionMatch)
	}
	if _, err := lw.List(metav1.ListOptions{Continue: "2", Limit: 2}); err != nil {
		t.Fatal(err)
	}
	if o := srv.reqs[1]; o.Continue != "2" || o.Limit != 2 {
		t.Errorf("a caller's page became %+v", o)
	}
	if _, err := lw.Watch(metav1.ListOptions{}); err != nil || !srv.watched {
		t.Errorf("watch not passed through: %v", err)
	}
}

// An informer of a kind tenants write, built as the manager's cache
// builds it, fills itself from trimmed pages when the API server cannot
// stream the initial list (as envtest's etcd 3.4 cannot).
func TestPagedInformersFillFromTrimmedPages(t *testing.T) {
	for _, obj := range []runtime.Object{&corev1.Secret{}, &corev1.ServiceAccount{}, &corev1.Namespace{}} {
		if tenantTrim(obj) == nil {
			t.Errorf("%T: no trim", obj)
		}
	}
	if tenantTrim(&corev1.ConfigMap{}) != nil {
		t.Error("ConfigMaps are not a kind regcred trims")
	}
	if CacheOptions().NewInformer == nil {
		t.Fatal("the manager's cache lists tenant kinds unpaged")
	}
	srv := &pagingServer{t: t, n: 2*listPageSize + 1, noStream: true}
	inf := CacheOptions().NewInformer(&toolscache.ListWatch{ListWithContextFunc: srv.ListWithContext, WatchFuncWithContext: srv.WatchWithContext},
		&corev1.ServiceAccount{}, 0, toolscache.Indexers{})
	_ = inf.SetTransform(tenantTrim(&corev1.ServiceAccount{}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go inf.RunWithContext(ctx)
	if !toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	cancel()
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if got := len(inf.GetStore().List()); got != srv.n {
		t.Errorf("informer holds %d ServiceAccounts, want %d", got, srv.n)
	}
	pages := 0
	for _, o := range srv.reqs {
		if o.Limit != listPageSize {
			t.Errorf("a list asked for limit %d, want %d", o.Limit, listPageSize)
		}
		pages++
	}
	if pages != 3 {
		t.Errorf("%d pages, want 3", pages)
	}
}
