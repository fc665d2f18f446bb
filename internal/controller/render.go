package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/source"
	"regcred.dev/regcred/internal/source/cloudsrc"
	"regcred.dev/regcred/internal/source/secretref"

	"regcred.dev/regcred/internal/credential"
)

// rendered is a credential's source turned into the bytes of the managed
// Secret's .dockerconfigjson, or the reason it could not be.
type rendered struct {
	Data    []byte
	Version string
	Err     *source.Error
	// Token is set for short-lived tokens.
	Token *tokenInfo
}

// tokenInfo is when a short-lived token was got, expires and will be
// refreshed, and why its last refresh failed, if it did.
type tokenInfo struct {
	ExpiresAt, RefreshedAt, RefreshAt time.Time
	RefreshErr                        *source.Error
	// Previous is the rendering of the token this one replaced, while it
	// is still good.
	Previous []byte
}

// current reports whether a copy's data is up to date: the rendering, or
// a token it replaced that still works (copies are rewritten in the
// moments after each refresh).
func (r *rendered) current(data []byte) bool {
	return sameData(data, r.Data) || (r.Token != nil && r.Token.Previous != nil && sameData(data, r.Token.Previous))
}

// renderer resolves credentials' sources and remembers the result until the
// source changes, so that fanning one credential out to a thousand
// namespaces reads its source once.
type renderer struct {
	reader           client.Reader
	regcredNamespace string
	// clouds builds the fetchers of cloud sources, whose tokens tokens
	// holds: they are not remembered here.
	clouds *cloudsrc.Builder
	tokens *cloud.Cache

	mu   sync.Mutex
	memo map[string]*rendered // key: memoKey
	// users are the credentials rendered from each memo entry, and
	// usedKey the entry of each: an entry lives while a credential uses
	// it, so deleted or changed credentials leave nothing behind.
	users   map[string]map[credential.Key]bool
	usedKey map[credential.Key]string
	group   singleflight.Group
	// epoch counts invalidations, so that a read that started before the
	// source changed cannot store its stale result after the change.
	epoch uint64
}

func newRenderer(reader client.Reader, regcredNamespace string, clouds *cloudsrc.Builder, tokens *cloud.Cache) *renderer {
	return &renderer{reader: reader, regcredNamespace: regcredNamespace, clouds: clouds, tokens: tokens, memo: map[string]*rendered{},
		users: map[string]map[credential.Key]bool{}, usedKey: map[credential.Key]string{}}
}

// provider returns the credential's source provider, an ID of what it
// reads, and whether its result may be remembered until that changes.
func (s *renderer) provider(c *credential.Credential) (source.Provider, string, bool, error) {
	if ref := c.Spec.Source.SecretRef; ref != nil {
		ns := c.SourceNamespace(s.regcredNamespace)
		return &secretref.Provider{Reader: s.reader, Name: ref.Name}, "secret/" + ns + "/" + ref.Name, true, nil
	}
	if cloudsrc.IsCloud(&c.Spec.Source) {
		f, err := s.fetcher(c)
		if err != nil {
			return nil, "", false, err
		}
		return &cloudsrc.Provider{Cache: s.tokens, Fetcher: f}, "token/" + f.Key(), false, nil
	}
	return nil, "", false, errors.New("no source set")
}

func (s *renderer) fetcher(c *credential.Credential) (cloud.Fetcher, error) {
	if s.clouds == nil {
		return nil, errors.New("cloud sources are not enabled")
	}
	tenant := c.Kind == credential.KindNamespaced
	f, err := s.clouds.Fetcher(&c.Spec.Source, c.SourceNamespace(s.regcredNamespace), c.Spec.Registries, tenant)
	if err != nil || !tenant {
		return f, err
	}
	// The token cache limits each tenant on its own.
	return cloud.ForTenant(f, c.Namespace), nil
}

// Token waits: how long a reconcile worker or an admission request waits
// for a token that is being asked for. The request goes on after, and the
// token cache's OnChange brings the credential back when it is in, so one
// tenant's slow endpoint holds a shared worker for seconds, not minutes.
const (
	tokenWait       = 10 * time.Second
	tenantTokenWait = 2 * time.Second
)

// tokenKey is the token cache key of a credential with a cloud source,
// else "".
func (s *renderer) tokenKey(c *credential.Credential) string {
	if !cloudsrc.IsCloud(&c.Spec.Source) {
		return ""
	}
	f, err := s.fetcher(c)
	if err != nil {
		return ""
	}
	return f.Key()
}

// memoKey covers everything the rendering depends on.
func memoKey(sourceID string, registries []string) string {
	r := slices.Clone(registries)
	slices.Sort(r)
	return sourceID + "|" + strings.Join(r, ",")
}

// get returns the rendered credential, reading the source only when it is
// not remembered. Transient read failures are not remembered.
func (s *renderer) get(ctx context.Context, c *credential.Credential) *rendered {
	p, id, cacheable, err := s.provider(c)
	if err != nil {
		return &rendered{Err: &source.Error{Reason: source.Invalid, Message: err.Error()}}
	}
	req := source.Request{Namespace: c.SourceNamespace(s.regcredNamespace), Registries: c.Spec.Registries}
	if !cacheable {
		s.forget(c.Key) // its source may have been a Secret before
		wait := tokenWait
		if c.Kind == credential.KindNamespaced {
			wait = tenantTokenWait
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		return render(p.Resolve(wctx, req))
	}
	key := memoKey(id, c.Spec.Registries)
	s.mu.Lock()
	s.use(c.Key, key)
	r, ok := s.memo[key]
	epoch := s.epoch
	s.mu.Unlock()
	if ok {
		return r
	}
	flight := fmt.Sprintf("%s#%d", key, epoch)
	v, _, _ := s.group.Do(flight, func() (any, error) {
		out := render(p.Resolve(ctx, req))
		if out.Err == nil || out.Err.Reason != source.Unavailable {
			s.mu.Lock()
			if s.epoch == epoch && len(s.users[key]) > 0 {
				s.memo[key] = out
			}
			s.mu.Unlock()
		}
		return out, nil
	})
	return v.(*rendered)
}

// render turns a provider's result into the bytes of a managed Secret.
func render(res *source.Result, err error) *rendered {
	out := &rendered{}
	var serr *source.Error
	switch {
	case errors.As(err, &serr):
		out.Err = serr
	case err != nil:
		out.Err = &source.Error{Reason: source.Unavailable, Message: err.Error()}
	default:
		data, rerr := res.Config.MarshalDockerConfigJSON()
		if rerr != nil {
			out.Err = &source.Error{Reason: source.Invalid, Message: rerr.Error()}
			return out
		}
		out.Data, out.Version = data, res.Version
		if !res.ExpiresAt.IsZero() {
			out.Token = &tokenInfo{ExpiresAt: res.ExpiresAt, RefreshedAt: res.RefreshedAt, RefreshAt: res.RefreshAt}
			if res.RefreshErr != nil {
				out.Token.RefreshErr = cloudsrc.SourceError(res.RefreshErr)
			}
			if res.Previous != nil {
				if prev, err := res.Previous.MarshalDockerConfigJSON(); err == nil {
					out.Token.Previous = prev
				}
			}
		}
	}
	return out
}

// use records that credential ck renders from memo entry key, dropping
// the entry it used before if nobody else does. Called with s.mu held.
func (s *renderer) use(ck credential.Key, key string) {
	if old, ok := s.usedKey[ck]; ok && old != key {
		s.release(ck, old)
	}
	s.usedKey[ck] = key
	if s.users[key] == nil {
		s.users[key] = map[credential.Key]bool{}
	}
	s.users[key][ck] = true
}

func (s *renderer) release(ck credential.Key, key string) {
	delete(s.usedKey, ck)
	delete(s.users[key], ck)
	if len(s.users[key]) == 0 {
		delete(s.users, key)
		delete(s.memo, key)
	}
}

// forget drops what the renderer keeps for a credential that is gone.
func (s *renderer) forget(ck credential.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if key, ok := s.usedKey[ck]; ok {
		s.release(ck, key)
	}
}

// memoLen is how many renderings are remembered.
func (s *renderer) memoLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.memo)
}

// invalidateSecret forgets everything rendered from the Secret ns/name.
func (s *renderer) invalidateSecret(namespace, name string) {
	prefix := "secret/" + namespace + "/" + name + "|"
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	for k := range s.memo {
		if strings.HasPrefix(k, prefix) {
			delete(s.memo, k)
		}
	}
}
