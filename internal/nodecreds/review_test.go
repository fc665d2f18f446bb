package nodecreds

import (
	"context"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time for the review cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestReviews(t *testing.T, max int, maxTTL time.Duration) (*reviews, *fakeReviewer, *clock) {
	t.Helper()
	clk := &clock{t: time.Now()}
	f := newFakeReviewer()
	return newReviews(f.create, DefaultAudience, max, maxTTL, clk.now), f, clk
}

func (f *fakeReviewer) mint(exp time.Time) string {
	tok := jwt(exp)
	f.accept(tok, boundStatus("apps", "default", "web", "uid-apps-web", testNode))
	return tok
}

func TestReviewCacheUntilExpiry(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tokenTTL time.Duration
		maxTTL   time.Duration
		// kept: how long the answer is reused.
		kept time.Duration
	}{
		{"until the token expires", 5 * time.Minute, 10 * time.Minute, 5 * time.Minute},
		{"at most maxTTL", time.Hour, 10 * time.Minute, 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, f, clk := newTestReviews(t, 100, tc.maxTTL)
			tok := f.mint(clk.now().Add(tc.tokenTTL))
			ctx := context.Background()
			id, cached, err := r.identify(ctx, tok)
			if err != nil || cached {
				t.Fatalf("first: %v cached=%v", err, cached)
			}
			if id.Namespace != "apps" || id.ServiceAccount != "default" || id.PodName != "web" || id.PodUID != "uid-apps-web" || id.NodeName != testNode {
				t.Errorf("identity %+v", id)
			}
			if want := clk.now().Add(tc.tokenTTL).Truncate(time.Second); !id.Expires.Equal(want) {
				t.Errorf("expires %s, want %s", id.Expires, want)
			}
			clk.advance(tc.kept - time.Second)
			if _, cached, err := r.identify(ctx, tok); err != nil || !cached {
				t.Errorf("before %s: %v cached=%v", tc.kept, err, cached)
			}
			clk.advance(time.Second)
			if _, cached, _ := r.identify(ctx, tok); cached {
				t.Errorf("still cached after %s", tc.kept)
			}
			if n := f.calls.Load(); n != 2 {
				t.Errorf("%d TokenReviews, want 2", n)
			}
		})
	}
}

func TestReviewRefusalsNotCached(t *testing.T) {
	r, f, _ := newTestReviews(t, 100, time.Minute)
	tok := jwt(time.Now().Add(time.Hour))
	for range 3 {
		if _, _, err := r.identify(context.Background(), tok); err == nil {
			t.Fatal("an unknown token was accepted")
		}
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("%d TokenReviews, want 3: a refusal is not remembered (the token may be a moment early)", n)
	}
}

func TestReviewCacheBounded(t *testing.T) {
	r, f, clk := newTestReviews(t, 3, time.Hour)
	ctx := context.Background()
	var toks []string
	for range 5 {
		tok := f.mint(clk.now().Add(time.Hour))
		toks = append(toks, tok)
		if _, _, err := r.identify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.order.Len(); n != 3 || len(r.byKey) != 3 {
		t.Fatalf("cache holds %d (%d), want 3", n, len(r.byKey))
	}
	for i, want := range []bool{false, false, true, true, true} {
		if _, ok := r.cached(hashToken(toks[i])); ok != want {
			t.Errorf("token %d cached=%v, want %v (oldest evicted first)", i, ok, want)
		}
	}
	// Only hashes are held.
	for _, el := range r.byKey {
		e := el.Value.(*reviewEntry)
		for _, tok := range toks {
			if strings.Contains(string(e.key[:]), tok) {
				t.Error("the cache holds a token")
			}
		}
	}
}

func TestReviewExpiredTokenNotCached(t *testing.T) {
	// The API server accepted it a moment before it expired: it is not
	// reused past its exp.
	r, f, clk := newTestReviews(t, 10, time.Hour)
	tok := f.mint(clk.now().Add(-time.Second))
	if _, _, err := r.identify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.cached(hashToken(tok)); ok {
		t.Error("an expired token is cached")
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestExpiryHostileTokens(t *testing.T) {
	for _, tc := range []struct {
		name  string
		token string
		want  int64 // 0: refused
	}{
		{"valid", "h." + b64(`{"exp":1900000000}`) + ".s", 1900000000},
		{"empty", "", 0},
		{"two parts", "h." + b64(`{"exp":1}`), 0},
		{"four parts", "h." + b64(`{"exp":1900000000}`) + ".s.x", 0},
		{"padded base64", "h." + base64.URLEncoding.EncodeToString([]byte(`{"exp":1900000000 }`)) + ".s", 0},
		{"std base64 alphabet", "h." + strings.NewReplacer("-", "+", "_", "/").Replace(b64(`{"exp":1900000000,"x":"??>>"}`)) + ".s", 0},
		{"not JSON", "h." + b64(`exp=1900000000`) + ".s", 0},
		{"no exp", "h." + b64(`{"iat":1900000000}`) + ".s", 0},
		{"exp null", "h." + b64(`{"exp":null}`) + ".s", 0},
		{"exp zero", "h." + b64(`{"exp":0}`) + ".s", 0},
		{"exp negative", "h." + b64(`{"exp":-5}`) + ".s", 0},
		{"exp fraction", "h." + b64(`{"exp":1.5e9}`) + ".s", 0},
		{"exp overflows int64", "h." + b64(`{"exp":99999999999999999999999}`) + ".s", 0},
		{"exp a word", "h." + b64(`{"exp":"soon"}`) + ".s", 0},
		{"exp an object", "h." + b64(`{"exp":{"a":1}}`) + ".s", 0},
		{"exp an array", "h." + b64(`{"exp":[1]}`) + ".s", 0},
		{"claims an array", "h." + b64(`[1,2]`) + ".s", 0},
		{"deep nesting", "h." + b64(strings.Repeat(`{"a":`, 10000)+"1"+strings.Repeat("}", 10000)) + ".s", 0},
		{"dots only", "..", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := expiry(tc.token)
			switch {
			case tc.want == 0 && err == nil:
				t.Errorf("accepted: %s", got)
			case tc.want != 0 && (err != nil || got.Unix() != tc.want):
				t.Errorf("got %s %v, want %d", got, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), tc.token) && tc.token != "" {
				t.Errorf("error quotes the token: %v", err)
			}
		})
	}
}

func FuzzExpiry(f *testing.F) {
	f.Add("h." + b64(`{"exp":1900000000}`) + ".s")
	f.Add("h." + b64(`{"exp":"1e3"}`) + ".s")
	f.Fuzz(func(t *testing.T, token string) {
		got, err := expiry(token)
		if err == nil && got.Unix() <= 0 {
			t.Errorf("accepted exp %s", got)
		}
	})
}
