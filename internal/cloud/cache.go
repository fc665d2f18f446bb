package cloud

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
)

// Observer hears of every token request, for metrics. reason is empty on
// success.
type Observer interface {
	TokenFetched(kind string, reason Reason)
}

// CacheOptions tune a Cache; the zero value of each field picks the
// default.
type CacheOptions struct {
	// RefreshFraction of a token's life after which a new one is asked
	// for. Default 0.5: a 12-hour ECR token is refreshed after about 6
	// hours, leaving 6 hours to ride out an outage.
	RefreshFraction float64
	// Jitter spreads refreshes by ± this fraction of the refresh delay.
	// Default 0.1.
	Jitter float64
	// MinRefresh is the shortest time between two requests for one token,
	// whatever its life. Default 1s.
	MinRefresh time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed request; it
	// doubles with each failure. Defaults 2s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// ThrottledBackoff is the least wait after the cloud throttled a
	// request. Default 30s.
	ThrottledBackoff time.Duration
	// RequestsPerSecond limits requests across all tokens (ECR allows
	// about 20/s per account and region). Default 10.
	RequestsPerSecond float64
	// FetchTimeout bounds one request. Default 1m.
	FetchTimeout time.Duration
	// TenantRequestsPerSecond limits the requests of each tenant's
	// tokens (Tenanted fetchers), which do not take from
	// RequestsPerSecond: one tenant's endpoint cannot use up the
	// others'. Default 1, with a burst of 5.
	TenantRequestsPerSecond float64
	// TenantMinRefresh is the shortest time between two requests for one
	// tenant token, refresh or retry. Default 1m.
	TenantMinRefresh time.Duration
	// TenantFetchTimeout bounds one request of a tenant token. Default 10s.
	TenantFetchTimeout time.Duration
	// OnChange is called, without locks held, when a token was replaced,
	// expired, or its failure changed: whoever copies it should look again.
	OnChange func(key string)
	// InUse says whether anybody still needs a token; tokens nobody needs
	// are dropped instead of refreshed. Nil keeps every token.
	InUse func(key string) bool
	// Observer hears of every request.
	Observer Observer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Cache holds one token per fetcher key, asks for it once however many
// callers want it at once, refreshes it in the background from its real
// expiry, keeps serving it until it expires while refreshes fail, and
// backs off after failures.
type Cache struct {
	opts    CacheOptions
	limiter *rate.Limiter
	group   singleflight.Group

	mu      sync.Mutex
	entries map[string]*entry
	tenants map[string]*tenantState
	closed  bool
}

// tenantState is one tenant's limiter, kept while it has tokens.
type tenantState struct {
	limiter *rate.Limiter
	entries int
}

// Tenanted is a Fetcher whose identity and endpoints a tenant chose (a
// RegistryCredential's). The cache limits each tenant on its own, with a
// shorter timeout and a longer least refresh interval.
type Tenanted interface {
	Fetcher
	// Tenant names the tenant: the credential's namespace.
	Tenant() string
}

// ForTenant marks f as a tenant's.
func ForTenant(f Fetcher, tenant string) Fetcher { return tenantFetcher{Fetcher: f, tenant: tenant} }

type tenantFetcher struct {
	Fetcher
	tenant string
}

func (f tenantFetcher) Tenant() string { return f.tenant }

func tenantOf(f Fetcher) string {
	if t, ok := f.(Tenanted); ok {
		return t.Tenant()
	}
	return ""
}

type entry struct {
	fetcher Fetcher
	// tenant is the fetcher's tenant; "" for the cluster's own.
	tenant string
	token  *Token
	// previous is the token the last refresh replaced: copies still
	// holding it are current until it expires.
	previous  *Token
	refreshAt time.Time
	err       *Error
	failures  int
	retryAt   time.Time
	timer     *time.Timer
}

// Lease is a token as the cache holds it.
type Lease struct {
	*Token
	// RefreshAt is when the next token will be asked for.
	RefreshAt time.Time
	// LastError is why the last refresh failed, while this token is still
	// good; nil when it did not.
	LastError *Error
	// Previous is the token this one replaced, while it is still good.
	Previous *Token
}

// NewCache makes a cache; Close stops its timers.
func NewCache(opts CacheOptions) *Cache {
	if opts.RefreshFraction <= 0 || opts.RefreshFraction >= 1 {
		opts.RefreshFraction = 0.5
	}
	if opts.Jitter <= 0 || opts.Jitter >= opts.RefreshFraction {
		opts.Jitter = min(0.1, opts.RefreshFraction/2)
	}
	if opts.MinRefresh <= 0 {
		opts.MinRefresh = time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 2 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	if opts.ThrottledBackoff <= 0 {
		opts.ThrottledBackoff = 30 * time.Second
	}
	if opts.RequestsPerSecond <= 0 {
		opts.RequestsPerSecond = 10
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = time.Minute
	}
	if opts.TenantRequestsPerSecond <= 0 {
		opts.TenantRequestsPerSecond = 1
	}
	if opts.TenantMinRefresh <= 0 {
		opts.TenantMinRefresh = time.Minute
	}
	if opts.TenantFetchTimeout <= 0 {
		opts.TenantFetchTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	burst := max(1, int(opts.RequestsPerSecond))
	return &Cache{opts: opts, limiter: rate.NewLimiter(rate.Limit(opts.RequestsPerSecond), burst),
		entries: map[string]*entry{}, tenants: map[string]*tenantState{}}
}

// Close stops every refresh.
func (c *Cache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, e := range c.entries {
		if e.timer != nil {
			e.timer.Stop()
		}
	}
	c.entries = map[string]*entry{}
	c.tenants = map[string]*tenantState{}
}

// setTenant moves e to tenant t's limiter. Called with c.mu held.
func (c *Cache) setTenant(e *entry, t string) {
	if e.tenant == t {
		return
	}
	c.releaseTenant(e.tenant)
	e.tenant = t
	if t == "" {
		return
	}
	ts := c.tenants[t]
	if ts == nil {
		ts = &tenantState{limiter: rate.NewLimiter(rate.Limit(c.opts.TenantRequestsPerSecond), 5)}
		c.tenants[t] = ts
	}
	ts.entries++
}

func (c *Cache) releaseTenant(t string) {
	if ts := c.tenants[t]; ts != nil {
		if ts.entries--; ts.entries <= 0 {
			delete(c.tenants, t)
		}
	}
}

// drop removes an entry. Called with c.mu held.
func (c *Cache) drop(key string) {
	e := c.entries[key]
	if e == nil {
		return
	}
	if e.timer != nil {
		e.timer.Stop()
	}
	c.releaseTenant(e.tenant)
	delete(c.entries, key)
}

// TenantLimiters is how many tenants' limiters the cache holds.
func (c *Cache) TenantLimiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.tenants)
}

// Get returns a token that has not expired, asking for one only when the
// cache has none; after a failure it returns that failure until the
// backoff has passed.
func (c *Cache) Get(ctx context.Context, f Fetcher) (*Lease, error) {
	key := f.Key()
	c.mu.Lock()
	e, ok := c.entries[key]
	if !ok {
		e = &entry{}
		c.entries[key] = e
	}
	// The newest fetcher reads the newest identity (a rotated key).
	e.fetcher = f
	c.setTenant(e, tenantOf(f))
	now := c.opts.Now()
	if e.token != nil && now.Before(e.token.ExpiresAt) {
		l := &Lease{Token: e.token, RefreshAt: e.refreshAt, LastError: e.err}
		if e.previous != nil && now.Before(e.previous.ExpiresAt) {
			l.Previous = e.previous
		}
		if e.err != nil {
			l.RefreshAt = e.retryAt
		}
		c.mu.Unlock()
		return l, nil
	}
	if e.err != nil && now.Before(e.retryAt) {
		err := e.err
		c.mu.Unlock()
		return nil, err
	}
	c.mu.Unlock()
	return c.fetch(ctx, key)
}

// fetch asks for a token once for all concurrent callers, and stores the
// outcome. A caller waits until its ctx is done, not longer: the request
// goes on, and OnChange tells when its answer is in.
func (c *Cache) fetch(ctx context.Context, key string) (*Lease, error) {
	ch := c.group.DoChan(key, func() (any, error) { return c.request(ctx, key), nil })
	var r fetchResult
	select {
	case res := <-ch:
		r = res.Val.(fetchResult)
	case <-ctx.Done():
		if c.opts.OnChange != nil {
			go func() { <-ch; c.opts.OnChange(key) }()
		}
		return nil, errorf(TokenRequestFailed, "the token request is taking long; its answer is used when it comes")
	}
	if r.err != nil {
		return nil, r.err
	}
	return r.lease, nil
}

// request makes one token request and stores its outcome.
func (c *Cache) request(ctx context.Context, key string) fetchResult {
	f, tenant, limiter, timeout, ferr := c.target(key)
	if ferr != nil {
		return fetchResult{err: ferr}
	}
	// The request outlives a cancelled caller: others wait on it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var (
		tok *Token
		err error
	)
	if tenant == "" {
		err = limiter.Wait(fctx)
	} else if !waitBriefly(fctx, limiter) {
		err = errorf(Throttled, "namespace %s asks for tokens faster than %g a second; retrying later", tenant, c.opts.TenantRequestsPerSecond)
	}
	if err == nil {
		tok, err = f.Fetch(fctx)
	}
	if err == nil {
		err = c.check(tok)
	}
	cerr := asCloudError(err, f.Kind())
	if c.opts.Observer != nil {
		reason := Reason("")
		if cerr != nil {
			reason = cerr.Reason
		}
		c.opts.Observer.TokenFetched(f.Kind(), reason)
	}
	return c.store(key, tok, cerr)
}

// tenantMaxWait is the longest a tenant's request queues for its
// limiter: beyond it the request is refused as throttled (and retried
// after TenantMinRefresh), so a tenant's backlog is never waited out.
const tenantMaxWait = time.Second

func waitBriefly(ctx context.Context, l *rate.Limiter) bool {
	r := l.Reserve()
	d := r.Delay()
	if d > tenantMaxWait {
		r.Cancel()
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		r.Cancel()
		return false
	}
}

// target is what a request for key uses: its fetcher and tenant, and the
// limiter and timeout of the tenant, or the cluster's own.
func (c *Cache) target(key string) (Fetcher, string, *rate.Limiter, time.Duration, *Error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	switch {
	case c.closed:
		return nil, "", nil, 0, errorf(TokenRequestFailed, "the token cache is closed: the manager is stopping")
	case e == nil:
		// Forgotten (its keys changed) since the caller looked: the
		// caller's own fetcher asks again.
		return nil, "", nil, 0, errorf(TokenRequestFailed, "the token was dropped while it was being asked for; retrying")
	}
	if ts := c.tenants[e.tenant]; ts != nil {
		return e.fetcher, e.tenant, ts.limiter, c.opts.TenantFetchTimeout, nil
	}
	return e.fetcher, e.tenant, c.limiter, c.opts.FetchTimeout, nil
}

type fetchResult struct {
	lease   *Lease
	err     *Error
	changed bool
}

// check refuses tokens that cannot be scheduled.
func (c *Cache) check(tok *Token) error {
	if tok == nil {
		return errorf(TokenRequestFailed, "no token in the answer")
	}
	if tok.ReceivedAt.IsZero() {
		tok.ReceivedAt = c.opts.Now()
	}
	if !tok.ExpiresAt.After(tok.ReceivedAt) {
		return errorf(TokenRequestFailed, "the token had expired when it arrived (expires %s, local time %s): is a clock skewed?",
			tok.ExpiresAt.UTC().Format(time.RFC3339), tok.ReceivedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

func (c *Cache) store(key string, tok *Token, err *Error) fetchResult {
	c.mu.Lock()
	e := c.entries[key]
	if e == nil || c.closed {
		c.mu.Unlock()
		if err != nil {
			return fetchResult{err: err}
		}
		return fetchResult{lease: &Lease{Token: tok}}
	}
	now := c.opts.Now()
	var r fetchResult
	if err == nil {
		if e.token != nil && now.Before(e.token.ExpiresAt) {
			e.previous = e.token
		}
		e.token, e.err, e.failures, e.retryAt = tok, nil, 0, time.Time{}
		e.refreshAt = c.refreshTime(tok, e.tenant != "")
		r = fetchResult{lease: &Lease{Token: tok, RefreshAt: e.refreshAt, Previous: e.previous}, changed: true}
	} else {
		r.changed = e.err == nil || e.err.Reason != err.Reason || e.err.Message != err.Message
		e.err = err
		e.failures++
		e.retryAt = now.Add(c.backoff(e.failures, err.Reason, e.tenant != ""))
		r.err = err
		if e.token != nil && now.Before(e.token.ExpiresAt) {
			// The last good token keeps serving until it expires.
			r = fetchResult{lease: &Lease{Token: e.token, RefreshAt: e.retryAt, LastError: err}, changed: r.changed}
		}
	}
	c.schedule(key, e, now)
	c.mu.Unlock()
	if r.changed && c.opts.OnChange != nil {
		go c.opts.OnChange(key)
	}
	return r
}

// minInterval is the least time between two requests for one token.
func (c *Cache) minInterval(tenant bool) time.Duration {
	if tenant {
		return max(c.opts.MinRefresh, c.opts.TenantMinRefresh)
	}
	return c.opts.MinRefresh
}

func (c *Cache) refreshTime(tok *Token, tenant bool) time.Time {
	life := tok.ExpiresAt.Sub(tok.ReceivedAt)
	frac := c.opts.RefreshFraction * (1 + c.opts.Jitter*(2*rand.Float64()-1))
	d := max(time.Duration(float64(life)*frac), c.minInterval(tenant))
	return tok.ReceivedAt.Add(d)
}

func (c *Cache) backoff(failures int, reason Reason, tenant bool) time.Duration {
	if tenant {
		// No jitter below the least interval: it is a promise.
		return max(c.backoffJittered(failures, reason), c.opts.TenantMinRefresh)
	}
	return c.backoffJittered(failures, reason)
}

func (c *Cache) backoffJittered(failures int, reason Reason) time.Duration {
	d := c.opts.MinBackoff
	for i := 1; i < failures && d < c.opts.MaxBackoff; i++ {
		d *= 2
	}
	if reason == Throttled {
		d = max(d, c.opts.ThrottledBackoff)
	}
	d = min(d, c.opts.MaxBackoff)
	// ±20%, so that many failing tokens do not retry in step.
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// schedule sets the entry's timer to its next event: the refresh, the
// retry, or the expiry of the token a failing refresh keeps serving.
// Called with c.mu held.
func (c *Cache) schedule(key string, e *entry, now time.Time) {
	var next time.Time
	switch {
	case e.err != nil:
		next = e.retryAt
		if e.token != nil && e.token.ExpiresAt.Before(next) {
			next = e.token.ExpiresAt
		}
	case e.token != nil:
		next = e.refreshAt
	default:
		return
	}
	d := max(next.Sub(now), 0)
	if e.timer != nil {
		e.timer.Stop()
	}
	e.timer = time.AfterFunc(d, func() { c.wake(key) })
}

// wake runs an entry's timer event.
func (c *Cache) wake(key string) {
	if c.opts.InUse != nil && !c.opts.InUse(key) {
		c.mu.Lock()
		c.drop(key)
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	e := c.entries[key]
	if e == nil || c.closed {
		c.mu.Unlock()
		return
	}
	now := c.opts.Now()
	expired := e.token != nil && !now.Before(e.token.ExpiresAt)
	if expired {
		e.token = nil
	}
	due := (e.err != nil && !now.Before(e.retryAt)) || (e.err == nil && e.token != nil && !now.Before(e.refreshAt)) || e.token == nil
	if !due {
		c.schedule(key, e, now)
		c.mu.Unlock()
		if expired && c.opts.OnChange != nil {
			c.opts.OnChange(key)
		}
		return
	}
	c.mu.Unlock()
	if expired && c.opts.OnChange != nil {
		c.opts.OnChange(key)
	}
	_, _ = c.fetch(context.Background(), key)
}

// Forget drops a token (its identity changed, say).
func (c *Cache) Forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop(key)
}

// Len is how many tokens the cache holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// asCloudError classifies any error a fetcher returned.
func asCloudError(err error, kind string) *Error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errorf(TokenRequestFailed, "%s token request timed out", kind)
	}
	return errorf(TokenRequestFailed, "%s token request failed: %v", kind, err)
}
