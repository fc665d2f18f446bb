// Command tokenfairness measures what a hostile tenant's token endpoint
// costs other tenants' token requests in regcred's token cache: 4 shared
// workers (the namespace controller's default) ask for the tokens of one
// hostile tenant's credentials and of 22 others (10 tenants' and 2
// cluster ones), the hostile ones first. The hostile endpoint either
// answers after 30 s or answers 429 at once. Everything is on loopback.
//
//	go run ./bench/tokenfairness
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"regcred.dev/regcred/internal/cloud"
)

var (
	slowHostile     = flag.Int("slow-hostile", 8, "hostile credentials whose endpoint answers after -slow")
	slow            = flag.Duration("slow", 30*time.Second, "how long the slow endpoint takes")
	throttleHostile = flag.Int("429-hostile", 100, "hostile credentials whose endpoint answers 429")
	workers         = flag.Int("workers", 4, "shared workers")
)

// httpFetcher asks a loopback endpoint for a token.
type httpFetcher struct {
	key, url string
	client   *http.Client
}

func (f *httpFetcher) Key() string  { return f.key }
func (f *httpFetcher) Kind() string { return "bench" }
func (f *httpFetcher) Fetch(ctx context.Context) (*cloud.Token, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.url, nil)
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests {
		return nil, &cloud.Error{Reason: cloud.Throttled, Message: "throttled"}
	}
	var body struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	now := time.Now()
	return &cloud.Token{Auth: cloud.Auth{Username: "u", Password: body.Token}, ReceivedAt: now, ExpiresAt: now.Add(time.Hour)}, nil
}

type item struct {
	f       cloud.Fetcher
	tenant  bool
	hostile bool
}

func main() {
	flag.Parse()
	var hits atomic.Int64
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"Token":"t"}`))
	}))
	defer fast.Close()
	slowSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-time.After(*slow):
			_, _ = w.Write([]byte(`{"Token":"t"}`))
		case <-r.Context().Done():
		}
	}))
	defer slowSrv.Close()
	throttler := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer throttler.Close()

	fmt.Printf("# hostile token endpoint: %d shared workers; 22 other credentials (10 tenants, 2 cluster)\n\n", *workers)
	for _, sc := range []struct {
		name string
		url  string
		n    int
	}{{fmt.Sprintf("answers after %s", *slow), slowSrv.URL, *slowHostile}, {"answers 429", throttler.URL, *throttleHostile}} {
		hits.Store(0)
		others, busy, total := run(sc.url, fast.URL, sc.n)
		fmt.Printf("hostile endpoint %s, %d hostile credentials: others all served after %s; workers busy with hostile tokens %s; whole queue %s; requests to the hostile endpoint %d\n",
			sc.name, sc.n, others.Round(time.Millisecond), busy.Round(time.Millisecond), total.Round(time.Millisecond), hits.Load())
	}
	os.Exit(0)
}

// run serves a queue of hostile then other credentials with shared
// workers, as reconcilers do, and returns when the others were all served,
// the worker time the hostile ones took, and the time of the whole queue.
func run(hostileURL, fastURL string, n int) (time.Duration, time.Duration, time.Duration) {
	cache := cloud.NewCache(cloud.CacheOptions{})
	defer cache.Close()
	hc := &http.Client{}
	var queue []item
	for i := range n {
		queue = append(queue, item{f: markTenant(&httpFetcher{key: fmt.Sprintf("hostile-%d", i), url: hostileURL, client: hc}, "hostile"), tenant: true, hostile: true})
	}
	for i := range 22 {
		f := &httpFetcher{key: fmt.Sprintf("other-%d", i), url: fastURL, client: hc}
		if i < 20 {
			queue = append(queue, item{f: markTenant(f, fmt.Sprintf("tenant-%d", i%10)), tenant: true})
		} else {
			queue = append(queue, item{f: f})
		}
	}
	ch := make(chan item)
	var (
		wg          sync.WaitGroup
		mu          sync.Mutex
		othersLeft  = 22
		othersDone  time.Duration
		hostileBusy time.Duration
	)
	start := time.Now()
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				t0 := time.Now()
				get(cache, it)
				mu.Lock()
				if it.hostile {
					hostileBusy += time.Since(t0)
				} else if othersLeft--; othersLeft == 0 {
					othersDone = time.Since(start)
				}
				mu.Unlock()
			}
		}()
	}
	for _, it := range queue {
		ch <- it
	}
	close(ch)
	wg.Wait()
	return othersDone, hostileBusy, time.Since(start)
}

// get asks for a token as the renderer does: a tenant's wait is bounded.
func get(cache *cloud.Cache, it item) {
	ctx := context.Background()
	if it.tenant && tenantWait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, tenantWait)
		defer cancel()
	}
	_, _ = cache.Get(ctx, it.f)
}
