package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/singleflight"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/source"
	"regcred.dev/regcred/internal/source/secretref"

	"regcred.dev/regcred/internal/credential"
)

// rendered is a credential's source turned into the bytes of the managed
// Secret's .dockerconfigjson, or the reason it could not be.
type rendered struct {
	Data    []byte
	Version string
	Err     *source.Error
}

// renderer resolves credentials' sources and remembers the result until the
// source changes, so that fanning one credential out to a thousand
// namespaces reads its source once.
type renderer struct {
	reader           client.Reader
	regcredNamespace string

	mu    sync.Mutex
	memo  map[string]*rendered // key: memoKey
	group singleflight.Group
	// epoch counts invalidations, so that a read that started before the
	// source changed cannot store its stale result after the change.
	epoch uint64
}

func newRenderer(reader client.Reader, regcredNamespace string) *renderer {
	return &renderer{reader: reader, regcredNamespace: regcredNamespace, memo: map[string]*rendered{}}
}

func (s *renderer) provider(c *credential.Credential) (source.Provider, string, error) {
	if ref := c.Spec.Source.SecretRef; ref != nil {
		ns := c.SourceNamespace(s.regcredNamespace)
		return &secretref.Provider{Reader: s.reader, Name: ref.Name}, "secret/" + ns + "/" + ref.Name, nil
	}
	return nil, "", errors.New("no source set")
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
	p, id, err := s.provider(c)
	if err != nil {
		return &rendered{Err: &source.Error{Reason: source.Invalid, Message: err.Error()}}
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
		res, err := p.Resolve(ctx, source.Request{Namespace: c.SourceNamespace(s.regcredNamespace), Registries: c.Spec.Registries})
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
			} else {
				out.Data, out.Version = data, res.Version
			}
		}
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
