package cloud_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"regcred.dev/regcred/internal/cloud"
)

// hanging is a fetcher whose endpoint answers only when its ctx ends.
type hanging struct {
	key   string
	calls atomic.Int32
}

func (h *hanging) Key() string  { return h.key }
func (h *hanging) Kind() string { return "test" }
func (h *hanging) Fetch(ctx context.Context) (*cloud.Token, error) {
	h.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// A caller waits for a token no longer than its ctx; the request goes on
// and OnChange says when its answer is in.
func TestCacheCallerWaitIsBounded(t *testing.T) {
	changed := make(chan string, 4)
	c := cloud.NewCache(cloud.CacheOptions{OnChange: func(k string) { changed <- k }})
	defer c.Close()
	f := &scripted{key: "slow", life: time.Hour, block: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Get(ctx, f); err == nil {
		t.Fatal("got a token from a request that has not answered")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the caller waited %s for a bounded wait of 100ms", d)
	}
	close(f.block)
	select {
	case k := <-changed:
		if k != "slow" {
			t.Errorf("OnChange(%q)", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OnChange after the answer came")
	}
	if l, err := c.Get(context.Background(), f); err != nil || l.Auth.Password == "" {
		t.Errorf("the late answer was not kept: %v", err)
	}
}

// A tenant's request is cut at TenantFetchTimeout, and its next is not
// before TenantMinRefresh, whatever the backoff would say.
func TestCacheTenantTimeoutAndMinInterval(t *testing.T) {
	c := cloud.NewCache(cloud.CacheOptions{TenantFetchTimeout: 200 * time.Millisecond, MinBackoff: time.Millisecond})
	defer c.Close()
	h := &hanging{key: "hostile"}
	start := time.Now()
	_, err := c.Get(context.Background(), cloud.ForTenant(h, "tenant-a"))
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
	for range 20 {
		_, _ = c.Get(context.Background(), cloud.ForTenant(h, "tenant-a"))
	}
	if n := h.calls.Load(); n != 1 {
		t.Errorf("%d requests to a failing tenant endpoint within its minute, want 1", n)
	}
	// A tenant token's refresh is not sooner than a minute either.
	f := &scripted{key: "short", life: 2 * time.Second}
	l, err := c.Get(context.Background(), cloud.ForTenant(f, "tenant-a"))
	if err != nil {
		t.Fatal(err)
	}
	if d := l.RefreshAt.Sub(l.ReceivedAt); d < time.Minute {
		t.Errorf("a tenant token is refreshed after %s, want at least 1m", d)
	}
}

// One tenant's many credentials cannot use up the requests of the others:
// each tenant has its own limiter, apart from the cluster's.
func TestCacheTenantLimiterIsApart(t *testing.T) {
	c := cloud.NewCache(cloud.CacheOptions{RequestsPerSecond: 1, TenantRequestsPerSecond: 1, TenantFetchTimeout: 300 * time.Millisecond})
	defer c.Close()
	var throttled int
	for i := range 30 {
		f := &scripted{key: "hostile-" + string(rune('a'+i)), err: &cloud.Error{Reason: cloud.Throttled, Message: "429"}}
		_, err := c.Get(context.Background(), cloud.ForTenant(f, "hostile"))
		var ce *cloud.Error
		if errors.As(err, &ce) && ce.Reason == cloud.Throttled && len(f.callTimes()) == 0 {
			throttled++ // refused by the tenant's limiter, no request made
		}
	}
	if throttled < 20 {
		t.Errorf("the tenant's limiter held back %d of 30 requests", throttled)
	}
	start := time.Now()
	for _, tc := range []struct {
		tenant string
		key    string
	}{{"other", "o1"}, {"", "cluster"}} {
		f := &scripted{key: tc.key, life: time.Hour}
		var ff cloud.Fetcher = f
		if tc.tenant != "" {
			ff = cloud.ForTenant(f, tc.tenant)
		}
		if _, err := c.Get(context.Background(), ff); err != nil {
			t.Errorf("%s: %v", tc.key, err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("other tenants waited %s behind the hostile one", d)
	}
	if n := c.TenantLimiters(); n != 2 {
		t.Errorf("%d tenant limiters, want 2", n)
	}
	for i := range 30 {
		c.Forget("hostile-" + string(rune('a'+i)))
	}
	c.Forget("o1")
	if n := c.TenantLimiters(); n != 0 {
		t.Errorf("%d tenant limiters left after their tokens were dropped", n)
	}
}
