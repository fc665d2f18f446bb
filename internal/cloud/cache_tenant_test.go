package cloud_test

import (
	"context"
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
	// The fetch is still blocked, so Get coming back at all shows that the
	// caller's wait ended with its ctx.
	if _, err := c.Get(ctx, f); err == nil {
		t.Fatal("got a token from a request that has not answered")
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
	// The endpoint never answers: Get coming back shows the request was cut.
	_, err := c.Get(context.Background(), cloud.ForTenant(h, "tenant-a"))
	if err == nil {
		t.Fatal("a token from an endpoint that never answered")
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
	begin := time.Now()
	requests := 0
	for i := range 30 {
		f := &scripted{key: "hostile-" + string(rune('a'+i)), err: &cloud.Error{Reason: cloud.Throttled, Message: "429"}}
		_, _ = c.Get(context.Background(), cloud.ForTenant(f, "hostile"))
		requests += len(f.callTimes())
	}
	// A burst of 5, then one a second (and a request that found none
	// waited at most a second for it).
	if limit := 5 + int(time.Since(begin).Seconds()) + 1; requests > limit {
		t.Errorf("the hostile tenant made %d requests in %s, want at most %d", requests, time.Since(begin).Round(time.Millisecond), limit)
	}
	for _, tc := range []struct {
		tenant string
		key    string
	}{{"other", "o1"}, {"", "cluster"}} {
		f := &scripted{key: tc.key, life: time.Hour}
		var ff cloud.Fetcher = f
		if tc.tenant != "" {
			ff = cloud.ForTenant(f, tc.tenant)
		}
		// Had the hostile tenant's limiter been shared, this request would
		// have been refused as throttled after its second of waiting.
		if _, err := c.Get(context.Background(), ff); err != nil {
			t.Errorf("%s was held back by the hostile tenant: %v", tc.key, err)
		}
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
