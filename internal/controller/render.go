package controller

import (
	"bytes"
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
	return bytes.Equal(data, r.Data) || (r.Token != nil && r.Token.Previous != nil && bytes.Equal(data, r.Token.Previous))
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

	mu    sync.Mutex
	memo  map[string]*rendered // key: memoKey
	group singleflight.Group
	// epoch counts invalidations, so that a read that started before the
	// source changed cannot store its stale result after the change.
	epoch uint64
}

func newRenderer(reader client.Reader, regcredNamespace string, clouds *cloudsrc.Builder, tokens *cloud.Cache) *renderer {
	return &renderer{reader: reader, regcredNamespace: regcredNamespace, clouds: clouds, tokens: tokens, memo: map[string]*rendered{}}
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
	return s.clouds.Fetcher(&c.Spec.Source, c.SourceNamespace(s.regcredNamespace), c.Spec.Registries, c.Kind == credential.KindNamespaced)
}

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
		return render(p.Resolve(ctx, req))
	}
	key := memoKey(id, c.Spec.Registries)
	s.mu.Lock()
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
			if s.epoch == epoch {
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
