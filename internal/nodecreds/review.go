package nodecreds

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	authenticationv1 "k8s.io/api/authentication/v1"
)

// Identity is what a ServiceAccount token the kubelet minted for a Pod
// says, once the API server has accepted it.
type Identity struct {
	Namespace, ServiceAccount string
	PodName, PodUID           string
	NodeName                  string
	// Expires is when the token stops working (its exp claim).
	Expires time.Time
}

// Pod is namespace/name.
func (id *Identity) Pod() string { return id.Namespace + "/" + id.PodName }

// The keys the API server puts in a bound token's user extra.
const (
	extraPodName  = "authentication.kubernetes.io/pod-name"
	extraPodUID   = "authentication.kubernetes.io/pod-uid"
	extraNodeName = "authentication.kubernetes.io/node-name"
	saPrefix      = "system:serviceaccount:"
	// maxToken bounds a token: a ServiceAccount JWT is about 1 KiB.
	maxToken = 16 << 10
)

// refusal is a request the broker will not answer, with the HTTP status
// and the one line it says why. Its text never holds the token.
type refusal struct {
	status int
	reason string
	// result labels the request in metrics.
	result string
}

func (r *refusal) Error() string { return r.reason }

func refuse(status int, result, format string, args ...any) *refusal {
	return &refusal{status: status, result: result, reason: fmt.Sprintf(format, args...)}
}

// TokenReviewer creates a TokenReview (a Kubernetes client's Create).
type TokenReviewer func(ctx context.Context, review *authenticationv1.TokenReview) error

// reviews checks tokens with TokenReviews for one audience and remembers
// the accepted ones until they expire (bounded), so a kubelet pulling ten
// images for a Pod costs one review.
type reviews struct {
	create   TokenReviewer
	audience string
	max      int
	maxTTL   time.Duration
	now      func() time.Time

	mu    sync.Mutex
	byKey map[[32]byte]*list.Element
	order *list.List // front: newest
	group singleflight.Group
}

type reviewEntry struct {
	key  [32]byte
	id   Identity
	keep time.Time
}

func newReviews(create TokenReviewer, audience string, max int, maxTTL time.Duration, now func() time.Time) *reviews {
	return &reviews{create: create, audience: audience, max: max, maxTTL: maxTTL, now: now,
		byKey: map[[32]byte]*list.Element{}, order: list.New()}
}

// identify returns who token is, and whether the answer came from the
// cache. Only the token's hash is kept.
func (r *reviews) identify(ctx context.Context, token string) (*Identity, bool, error) {
	if err := checkSize(token); err != nil {
		return nil, false, err
	}
	key := hashToken(token)
	if id, ok := r.cached(key); ok {
		return id, true, nil
	}
	v, err, _ := r.group.Do(string(key[:]), func() (any, error) {
		// Shared by every request with this token: not cut short when the
		// first of them hangs up.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		id, err := r.review(ctx, token)
		if err == nil {
			r.store(key, id)
		}
		return id, err
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*Identity), false, nil
}

func (r *reviews) cached(key [32]byte) (*Identity, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	el, ok := r.byKey[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*reviewEntry)
	if !r.now().Before(e.keep) {
		r.order.Remove(el)
		delete(r.byKey, key)
		return nil, false
	}
	id := e.id
	return &id, true
}

func (r *reviews) store(key [32]byte, id *Identity) {
	keep := id.Expires
	if limit := r.now().Add(r.maxTTL); keep.After(limit) {
		keep = limit
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.byKey[key]; ok {
		r.order.Remove(el)
	}
	r.byKey[key] = r.order.PushFront(&reviewEntry{key: key, id: *id, keep: keep})
	for r.order.Len() > r.max {
		oldest := r.order.Back()
		r.order.Remove(oldest)
		delete(r.byKey, oldest.Value.(*reviewEntry).key)
	}
}

// review asks the API server. A token it does not accept, for another
// audience, of something other than a ServiceAccount, or not bound to a
// Pod on a node, is refused.
func (r *reviews) review(ctx context.Context, token string) (*Identity, error) {
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{r.audience}}}
	if err := r.create(ctx, tr); err != nil {
		return nil, fmt.Errorf("TokenReview: %w", err)
	}
	st := tr.Status
	if !st.Authenticated {
		// The API server's error may quote the token's claims: not sent on.
		return nil, refuse(401, "unauthenticated", "the API server did not accept the ServiceAccount token for audience %q", r.audience)
	}
	if !slices.Contains(st.Audiences, r.audience) {
		return nil, refuse(401, "unauthenticated", "the ServiceAccount token is not for audience %q", r.audience)
	}
	rest, ok := strings.CutPrefix(st.User.Username, saPrefix)
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || sa == "" {
		return nil, refuse(403, "forbidden", "the token is not a ServiceAccount's")
	}
	id := &Identity{Namespace: ns, ServiceAccount: sa,
		PodName: one(st.User.Extra[extraPodName]), PodUID: one(st.User.Extra[extraPodUID]), NodeName: one(st.User.Extra[extraNodeName])}
	if id.PodName == "" || id.PodUID == "" {
		return nil, refuse(403, "forbidden", "the token of ServiceAccount %s/%s is not bound to a Pod", ns, sa)
	}
	if id.NodeName == "" {
		return nil, refuse(403, "forbidden", "the token of Pod %s is not bound to a node", id.Pod())
	}
	exp, err := expiry(token)
	if err != nil {
		return nil, refuse(401, "unauthenticated", "the ServiceAccount token has no expiry: %v", err)
	}
	id.Expires = exp
	return id, nil
}

// checkSize refuses a missing token, or one longer than any JWT the API
// server mints.
func checkSize(token string) error {
	if token == "" {
		return refuse(401, "unauthenticated", "the request carries no ServiceAccount token: configure the kubelet's provider with tokenAttributes (regcred kubelet-config)")
	}
	if len(token) > maxToken {
		return refuse(401, "unauthenticated", "the ServiceAccount token is longer than %d bytes", maxToken)
	}
	return nil
}

func hashToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }

func one(v authenticationv1.ExtraValue) string {
	if len(v) == 1 {
		return v[0]
	}
	return ""
}

// expiry reads the exp claim of a JWT the API server has just accepted:
// its signature is checked, so the claim is the API server's own.
func expiry(token string) (time.Time, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, errors.New("claims are not base64url")
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == nil {
		return time.Time{}, errors.New("no exp claim")
	}
	sec, err := claims.Exp.Int64()
	if err != nil || sec <= 0 {
		return time.Time{}, errors.New("exp is not a time")
	}
	return time.Unix(sec, 0), nil
}

// precheck reads a token's claims without trusting them, to refuse for
// free what the API server would refuse anyway: another audience, expired,
// or not bound to a Pod on a node. What passes still gets a TokenReview.
func precheck(token, audience string, now time.Time) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return refuse(401, "unauthenticated", "the ServiceAccount token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return refuse(401, "unauthenticated", "the ServiceAccount token is not a JWT")
	}
	var claims struct {
		Aud json.RawMessage `json:"aud"`
		Exp *json.Number    `json:"exp"`
		K8s *struct {
			Pod  *struct{ Name, UID string } `json:"pod"`
			Node *struct{ Name, UID string } `json:"node"`
		} `json:"kubernetes.io"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return refuse(401, "unauthenticated", "the ServiceAccount token's claims are not JSON")
	}
	var auds []string
	var one string
	if json.Unmarshal(claims.Aud, &one) == nil {
		auds = []string{one}
	} else if json.Unmarshal(claims.Aud, &auds) != nil {
		auds = nil
	}
	if !slices.Contains(auds, audience) {
		return refuse(401, "unauthenticated", "the ServiceAccount token is not for audience %q", audience)
	}
	if claims.Exp == nil {
		return refuse(401, "unauthenticated", "the ServiceAccount token has no expiry")
	}
	if sec, err := claims.Exp.Int64(); err != nil || !now.Before(time.Unix(sec, 0)) {
		return refuse(401, "unauthenticated", "the ServiceAccount token has expired")
	}
	if claims.K8s == nil || claims.K8s.Pod == nil || claims.K8s.Node == nil {
		return refuse(403, "forbidden", "the ServiceAccount token is not bound to a Pod on a node")
	}
	return nil
}

// refusals remembers, per Pod UID, refusals that hold for good, each until
// the token it came with expires (bounded; the oldest go first).
type refusals struct {
	max   int
	now   func() time.Time
	mu    sync.Mutex
	byUID map[string]*list.Element
	order *list.List
}

type refusalEntry struct {
	uid  string
	ref  *refusal
	keep time.Time
}

func newRefusals(max int, now func() time.Time) *refusals {
	return &refusals{max: max, now: now, byUID: map[string]*list.Element{}, order: list.New()}
}

func (r *refusals) get(uid string) *refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	el, ok := r.byUID[uid]
	if !ok {
		return nil
	}
	e := el.Value.(*refusalEntry)
	if !r.now().Before(e.keep) {
		r.order.Remove(el)
		delete(r.byUID, uid)
		return nil
	}
	return e.ref
}

// put remembers ref for id's Pod and returns it.
func (r *refusals) put(id *Identity, ref *refusal) *refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.byUID[id.PodUID]; ok {
		r.order.Remove(el)
	}
	r.byUID[id.PodUID] = r.order.PushFront(&refusalEntry{uid: id.PodUID, ref: ref, keep: id.Expires})
	for r.order.Len() > r.max {
		old := r.order.Back()
		r.order.Remove(old)
		delete(r.byUID, old.Value.(*refusalEntry).uid)
	}
	return ref
}
