package cloud_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/testenv"
)

// scripted is a fetcher whose answers a test decides.
type scripted struct {
	key string
	mu  sync.Mutex
	// life of the tokens it returns; err fails instead.
	life  time.Duration
	err   error
	skew  time.Duration
	calls []time.Time
	block chan struct{}
}

func (s *scripted) Key() string  { return s.key }
func (s *scripted) Kind() string { return "test" }
func (s *scripted) Fetch(context.Context) (*cloud.Token, error) {
	s.mu.Lock()
	s.calls = append(s.calls, time.Now())
	n, life, err, skew, block := len(s.calls), s.life, s.err, s.skew, s.block
	s.mu.Unlock()
	if block != nil {
		<-block
	}
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &cloud.Token{Auth: cloud.Auth{Username: "u", Password: "p" + string(rune('0'+n))}, ReceivedAt: now, ExpiresAt: now.Add(life + skew)}, nil
}

func (s *scripted) set(life time.Duration, err error) {
	s.mu.Lock()
	s.life, s.err = life, err
	s.mu.Unlock()
}

func (s *scripted) callTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.calls...)
}

type observed struct {
	mu      sync.Mutex
	reasons []cloud.Reason
}

func (o *observed) TokenFetched(_ string, r cloud.Reason) {
	o.mu.Lock()
	o.reasons = append(o.reasons, r)
	o.mu.Unlock()
}

func TestCacheOneRequestForManyCallers(t *testing.T) {
	f := &scripted{key: "k", life: time.Hour, block: make(chan struct{})}
	obs := &observed{}
	c := cloud.NewCache(cloud.CacheOptions{Observer: obs})
	defer c.Close()
	var wg sync.WaitGroup
	var got atomic.Int32
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l, err := c.Get(context.Background(), f); err == nil && l.Auth.Password == "p1" {
				got.Add(1)
			}
		}()
	}
	testenv.Eventually(t, 30*time.Second, testenv.Condition("the first request", func() bool { return len(f.callTimes()) == 1 }))
	close(f.block)
	wg.Wait()
	if n := len(f.callTimes()); n != 1 {
		t.Errorf("%d requests for 200 callers, want 1", n)
	}
	if got.Load() != 200 {
		t.Errorf("%d callers got the token, want 200", got.Load())
	}
	if len(obs.reasons) != 1 || obs.reasons[0] != "" {
		t.Errorf("observer saw %v, want one success", obs.reasons)
	}
}

func TestCacheRefreshesBeforeExpiry(t *testing.T) {
	f := &scripted{key: "k", life: 2 * time.Second}
	changed := make(chan string, 10)
	c := cloud.NewCache(cloud.CacheOptions{RefreshFraction: 0.5, OnChange: func(k string) { changed <- k }})
	defer c.Close()
	first, err := c.Get(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if life := first.RefreshAt.Sub(first.ReceivedAt); life < 900*time.Millisecond || life > 1100*time.Millisecond {
		t.Errorf("refresh planned %s after receipt, want 50%% ± 10%% of 2s", life)
	}
	testenv.Eventually(t, 30*time.Second, testenv.Condition("a refresh", func() bool { return len(f.callTimes()) >= 2 }))
	if second := f.callTimes()[1]; !second.Before(first.ExpiresAt) {
		t.Errorf("refreshed at %s, after the token expired at %s", second, first.ExpiresAt)
	}
	<-changed // the first token
	if k := <-changed; k != "k" {
		t.Errorf("OnChange(%q), want k", k)
	}
	l, err := c.Get(context.Background(), f)
	if err != nil || l.Auth.Password == first.Auth.Password {
		t.Errorf("after the refresh Get returned %v, %v; want the new token", l, err)
	}
}

func TestCacheServesLastGoodTokenUntilExpiry(t *testing.T) {
	f := &scripted{key: "k", life: 1500 * time.Millisecond}
	c := cloud.NewCache(cloud.CacheOptions{MinBackoff: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	defer c.Close()
	first, err := c.Get(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	f.set(time.Hour, &cloud.Error{Reason: cloud.AccessDenied, Message: "revoked"})
	testenv.Eventually(t, 30*time.Second, testenv.Condition("a failed refresh", func() bool { return len(f.callTimes()) >= 2 }))
	if time.Now().Before(first.ExpiresAt.Add(-100 * time.Millisecond)) {
		l, err := c.Get(context.Background(), f)
		if err != nil || l.Auth.Password != first.Auth.Password {
			t.Errorf("while the token is good, Get returned %v, %v; want the last good token", l, err)
		}
	}
	testenv.Eventually(t, 30*time.Second, testenv.Condition("the token's expiry", func() bool { return time.Now().After(first.ExpiresAt) }))
	_, err = c.Get(context.Background(), f)
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Reason != cloud.AccessDenied {
		t.Errorf("after expiry Get returned %v, want the AccessDenied failure", err)
	}
}

func TestCacheBacksOffAfterFailures(t *testing.T) {
	f := &scripted{key: "k", err: &cloud.Error{Reason: cloud.Throttled, Message: "slow down"}}
	c := cloud.NewCache(cloud.CacheOptions{MinBackoff: time.Millisecond, ThrottledBackoff: time.Hour})
	defer c.Close()
	for range 50 {
		if _, err := c.Get(context.Background(), f); err == nil {
			t.Fatal("Get succeeded with a failing fetcher")
		}
	}
	if n := len(f.callTimes()); n != 1 {
		t.Errorf("%d requests while throttled, want 1: the backoff must hold the others", n)
	}
}

func TestCacheRefusesTokenExpiredOnArrival(t *testing.T) {
	f := &scripted{key: "k", life: time.Minute, skew: -2 * time.Minute}
	c := cloud.NewCache(cloud.CacheOptions{})
	defer c.Close()
	_, err := c.Get(context.Background(), f)
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Reason != cloud.TokenRequestFailed || !strings.Contains(ce.Message, "clock skewed") {
		t.Errorf("got %v, want a TokenRequestFailed naming clock skew", err)
	}
}

func TestCacheLifeShorterThanMinRefresh(t *testing.T) {
	f := &scripted{key: "k", life: 50 * time.Millisecond}
	c := cloud.NewCache(cloud.CacheOptions{MinRefresh: 500 * time.Millisecond})
	defer c.Close()
	if _, err := c.Get(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, testenv.Condition("a refresh", func() bool { return len(f.callTimes()) >= 2 }))
	calls := f.callTimes()
	if gap := calls[1].Sub(calls[0]); gap < 500*time.Millisecond {
		t.Errorf("two requests %s apart, want at least MinRefresh", gap)
	}
}

func TestCacheDropsTokensNobodyUses(t *testing.T) {
	f := &scripted{key: "k", life: 200 * time.Millisecond}
	var asked atomic.Int32
	c := cloud.NewCache(cloud.CacheOptions{MinRefresh: 10 * time.Millisecond, InUse: func(string) bool { asked.Add(1); return false }})
	defer c.Close()
	if _, err := c.Get(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, testenv.Condition("the refresh timer", func() bool { return asked.Load() > 0 }))
	testenv.Eventually(t, 30*time.Second, testenv.Condition("the entry's removal", func() bool { return c.Len() == 0 }))
	if n := len(f.callTimes()); n != 1 {
		t.Errorf("%d requests, want 1: an unused token is not refreshed", n)
	}
}
