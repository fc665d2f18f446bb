package nodecreds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/logkeys"
	"regcred.dev/regcred/internal/redact"
	"regcred.dev/regcred/internal/source/cloudsrc"
)

// Source renders a credential for the broker: the controller's renderer,
// which reads a Secret source once per change and serves cloud and plugin
// sources from the token cache, so no request writes anything.
type Source interface {
	NodeCredential(ctx context.Context, c *credential.Credential) (*Rendered, error)
}

// Options tune the broker.
type Options struct {
	// Audience of the tokens the kubelet mints for regcred's plugin.
	Audience string
	// CacheDuration is how long the kubelet may reuse an answer (default
	// 1m): how soon a rotation reaches new pulls.
	CacheDuration time.Duration
	// NodeQPS and NodeBurst limit each node's requests (default 20, 40).
	NodeQPS   float64
	NodeBurst int
	// ReviewQPS and ReviewBurst limit the TokenReviews of tokens not
	// cached, whoever sends them (default 100, 200).
	ReviewQPS   float64
	ReviewBurst int
	// ReviewCacheSize bounds the accepted tokens remembered (default
	// 10,000), each at most ReviewMaxTTL (default 10m) and never past its
	// expiry.
	ReviewCacheSize int
	ReviewMaxTTL    time.Duration
	// FlushInterval is how often each replica adds its counts to the
	// credentials' status.delivery (default 30s).
	FlushInterval time.Duration
	Now           func() time.Time
}

func (o *Options) defaults() {
	if o.Audience == "" {
		o.Audience = DefaultAudience
	}
	if o.CacheDuration == 0 {
		o.CacheDuration = time.Minute
	}
	if o.NodeQPS == 0 {
		o.NodeQPS = 20
	}
	if o.NodeBurst == 0 {
		o.NodeBurst = int(2 * o.NodeQPS)
	}
	if o.ReviewQPS == 0 {
		o.ReviewQPS = 100
	}
	if o.ReviewBurst == 0 {
		o.ReviewBurst = int(2 * o.ReviewQPS)
	}
	if o.ReviewCacheSize == 0 {
		o.ReviewCacheSize = 10000
	}
	if o.ReviewMaxTTL == 0 {
		o.ReviewMaxTTL = 10 * time.Minute
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate says what is wrong with the options, naming the flags of
// `regcred manager`.
func (o *Options) Validate() error {
	if cloudsrc.IsAPIServerAudience(o.Audience) {
		return fmt.Errorf("--node-credentials-audience %q is one the API server accepts: a kubelet would hand the plugin tokens that act in the cluster", o.Audience)
	}
	if o.CacheDuration < 0 || o.CacheDuration > time.Hour {
		return fmt.Errorf("--node-credentials-cache-duration %s: between 0s and 1h", o.CacheDuration)
	}
	if o.NodeQPS < 0 || o.NodeBurst < 0 {
		return fmt.Errorf("--node-credentials-node-qps and --node-credentials-node-burst must not be negative")
	}
	return nil
}

// Broker answers the kubelets' credential provider plugins.
type Broker struct {
	cat    *credential.Catalogue
	src    Source
	pods   client.Reader
	cached client.Reader
	log    logr.Logger
	opts   Options

	reviews    *reviews
	reviewRate *rate.Limiter
	// reviewBySource limits the uncached reviews one address may cause.
	reviewBySource *keyedLimits
	// nodes limits each node's requests for Pods of one namespace, so a
	// tenant's Pods exhaust only their own share of a node.
	nodes *keyedLimits
	// refused remembers Pods that can never be served (gone, replaced,
	// elsewhere, another ServiceAccount, mounting the audience), so a
	// replayed token costs no Pod read and no node budget.
	refused  *refusals
	stats    *Stats
	podGroup singleflight.Group
}

// Deps are what the broker reads.
type Deps struct {
	Catalogue *credential.Catalogue
	Source    Source
	// Pods reads Pods live (the API reader): a Pod deleted a moment ago
	// must not count.
	Pods client.Reader
	// Cached reads Namespaces and ServiceAccounts (the manager's cache).
	Cached client.Reader
	// Review creates TokenReviews.
	Review TokenReviewer
	Log    logr.Logger
}

// New builds a broker.
func New(d Deps, opts Options) (*Broker, error) {
	opts.defaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Broker{cat: d.Catalogue, src: d.Source, pods: d.Pods, cached: d.Cached, log: d.Log, opts: opts,
		reviews:        newReviews(d.Review, opts.Audience, opts.ReviewCacheSize, opts.ReviewMaxTTL, opts.Now),
		reviewRate:     rate.NewLimiter(rate.Limit(opts.ReviewQPS), opts.ReviewBurst),
		reviewBySource: newKeyedLimits(opts.ReviewQPS/2, max(1, opts.ReviewBurst/2), 4096),
		nodes:          newKeyedLimits(opts.NodeQPS, opts.NodeBurst, 16384),
		refused:        newRefusals(opts.ReviewCacheSize, opts.Now),
		stats:          newStats(opts.Now)}, nil
}

// Stats are the broker's counts per credential, for the status flusher.
func (b *Broker) Stats() *Stats { return b.stats }

// ServeHTTP implements the wire contract: a CredentialProviderRequest in,
// a CredentialProviderResponse out, or an HTTP error with one line.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == HealthPath {
		b.health(w)
		return
	}
	start := time.Now()
	// The server sets no body or write timeout: a client trickling its
	// request must not hold a connection.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(start.Add(10 * time.Second))
	_ = rc.SetWriteDeadline(start.Add(30 * time.Second))
	resp, review, err := b.serve(r)
	result := "served"
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		result = ref.result
		http.Error(w, clip(ref.reason, maxReason), ref.status)
	case err != nil:
		result = "error"
		b.log.Error(err, "node credential request failed")
		http.Error(w, clip("regcred's broker could not answer: "+redact.Message(err.Error()), maxReason), http.StatusInternalServerError)
	default:
		if len(resp.Auth) == 0 {
			result = "empty"
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	}
	requests.WithLabelValues(result).Inc()
	latency.WithLabelValues(review).Observe(time.Since(start).Seconds())
}

func (b *Broker) health(w http.ResponseWriter) {
	select {
	case <-b.cat.Synced():
		_, _ = io.WriteString(w, "ok\n")
	default:
		http.Error(w, "the credential catalogue is not loaded yet", http.StatusServiceUnavailable)
	}
}

// serve answers one request; review says how the token was checked
// (cached, api, none) for the latency histogram.
func (b *Broker) serve(r *http.Request) (*credentialproviderv1.CredentialProviderResponse, string, error) {
	if r.Method != http.MethodPost {
		return nil, "none", refuse(http.StatusMethodNotAllowed, "invalid", "POST a CredentialProviderRequest")
	}
	select {
	case <-b.cat.Synced():
	default:
		return nil, "none", refuse(http.StatusServiceUnavailable, "unavailable", "regcred's broker is starting: the credential catalogue is not loaded yet")
	}
	req, err := readRequest(r.Body)
	if err != nil {
		return nil, "none", err
	}
	ctx := r.Context()
	id, review, err := b.identify(ctx, req.ServiceAccountToken, sourceOf(r))
	if err != nil {
		return nil, review, err
	}
	if ref := b.refused.get(id.PodUID); ref != nil {
		return nil, review, ref
	}
	if !b.nodes.allow(id.NodeName + "/" + id.Namespace) {
		return nil, review, refuse(http.StatusTooManyRequests, "rate_limited", "node %s is over its request rate for namespace %s (--node-credentials-node-qps)", id.NodeName, id.Namespace)
	}
	resp, err := b.answer(ctx, id, req.Image)
	return resp, review, err
}

// sourceOf is the address a request came from, without its port.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func readRequest(body io.Reader) (*credentialproviderv1.CredentialProviderRequest, error) {
	data, err := io.ReadAll(io.LimitReader(body, MaxBody+1))
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "invalid", "reading the request: %v", err)
	}
	if len(data) > MaxBody {
		return nil, refuse(http.StatusRequestEntityTooLarge, "invalid", "the request is larger than %d bytes", MaxBody)
	}
	var req credentialproviderv1.CredentialProviderRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, refuse(http.StatusBadRequest, "invalid", "the request is not a CredentialProviderRequest in JSON")
	}
	if req.APIVersion != credentialproviderv1.SchemeGroupVersion.String() || req.Kind != "CredentialProviderRequest" {
		return nil, refuse(http.StatusBadRequest, "invalid", "the request is %s, want %s CredentialProviderRequest",
			redact.Printable(clip(req.APIVersion+" "+req.Kind, 100)), credentialproviderv1.SchemeGroupVersion)
	}
	if req.Image == "" {
		return nil, refuse(http.StatusBadRequest, "invalid", "the request names no image")
	}
	return &req, nil
}

// maxReason bounds the one line an error answer says (the contract).
const maxReason = 256

// clip cuts s to at most n bytes, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// identify checks the token, limiting the TokenReviews of tokens not
// cached: garbage must not turn into a flood on the API server, nor use up
// the budget of the kubelets. A token whose own claims say it cannot pass
// (another audience, expired, not bound to a Pod on a node) is refused
// before any budget is spent; one address may use half the budget.
// The second result says how the token was checked, for the latency
// histogram: cached, api (a TokenReview) or none.
func (b *Broker) identify(ctx context.Context, token, source string) (*Identity, string, error) {
	if err := checkSize(token); err != nil {
		return nil, "none", err
	}
	if id, ok := b.reviews.cached(hashToken(token)); ok {
		return id, "cached", nil
	}
	if err := precheck(token, b.opts.Audience, b.opts.Now()); err != nil {
		return nil, "none", err
	}
	if !b.reviewBySource.allow(source) || !b.reviewRate.Allow() {
		return nil, "none", refuse(http.StatusTooManyRequests, "rate_limited", "too many tokens to check right now; retry")
	}
	id, cached, err := b.reviews.identify(ctx, token)
	if cached {
		return id, "cached", err
	}
	return id, "api", err
}

// answer checks the Pod the token is bound to, then builds the answer
// from the credentials delivered to nodes that cover the image and select
// the Pod's namespace and ServiceAccount.
func (b *Broker) answer(ctx context.Context, id *Identity, image string) (*credentialproviderv1.CredentialProviderResponse, error) {
	if err := b.checkPod(ctx, id); err != nil {
		return nil, err
	}
	named, err := keyring.ParseImage(image)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "invalid", "image %s does not parse", redact.Printable(clip(image, 200)))
	}
	var ns corev1.Namespace
	if err := b.cached.Get(ctx, client.ObjectKey{Name: id.Namespace}, &ns); err != nil {
		return nil, notFoundRefusal(err, "namespace %s", id.Namespace)
	}
	var sa corev1.ServiceAccount
	if err := b.cached.Get(ctx, client.ObjectKey{Namespace: id.Namespace, Name: id.ServiceAccount}, &sa); err != nil {
		return nil, notFoundRefusal(err, "ServiceAccount %s/%s", id.Namespace, id.ServiceAccount)
	}
	repo := named.Name()
	target := keyring.ParseTarget(repo)
	var served []servedCredential
	for _, e := range b.cat.Covering(id.Namespace, target) {
		if !e.DeliversToNodes() {
			continue
		}
		if ok, err := e.Applies(&ns); err != nil || !ok {
			// Not this credential's namespace: nothing of it goes into
			// the credential's status (a tenant must not write there).
			continue
		}
		if ok, err := e.SelectsServiceAccount(&sa); err != nil || !ok {
			b.stats.refused(e.Key, id.NodeName, fmt.Sprintf("ServiceAccount %s/%s is not selected by spec.serviceAccounts", sa.Namespace, sa.Name))
			continue
		}
		r, err := b.src.NodeCredential(ctx, e.Credential)
		if err != nil {
			// Its Ready condition says why; the others still answer.
			b.log.Info("credential not served: its source did not resolve", logkeys.Credential, e.Key.String(), logkeys.Reason, redact.Message(err.Error()))
			continue
		}
		served = append(served, servedCredential{origin: e.Key.String(), Rendered: *r})
		b.stats.served(e.Key, id.NodeName)
	}
	auth, dropped := authFor(repo, target, served)
	if dropped > 0 {
		b.log.V(1).Info("more logins cover the image than the answer has keys for", logkeys.Namespace, id.Namespace, "dropped", dropped)
	}
	return &credentialproviderv1.CredentialProviderResponse{
		TypeMeta:      metav1.TypeMeta{APIVersion: credentialproviderv1.SchemeGroupVersion.String(), Kind: "CredentialProviderResponse"},
		CacheKeyType:  credentialproviderv1.ImagePluginCacheKeyType,
		CacheDuration: &metav1.Duration{Duration: cacheFor(b.opts.CacheDuration, b.opts.Now(), served, id.Expires, len(auth) == 0)},
		Auth:          auth,
	}, nil
}

func notFoundRefusal(err error, format string, args ...any) error {
	if apierrors.IsNotFound(err) {
		return refuse(http.StatusForbidden, "forbidden", format+" does not exist", args...)
	}
	return err
}

// checkPod reads the Pod the token is bound to, live: it must exist (the
// same one, by UID), run on the node the token names, as the token's
// ServiceAccount, and not mount a token for the broker's audience itself
// (a Pod that could would hand its workload what only the kubelet may
// ask for).
func (b *Broker) checkPod(ctx context.Context, id *Identity) error {
	v, err, _ := b.podGroup.Do(id.Pod()+"/"+id.PodUID, func() (any, error) {
		// Shared by every request for this Pod: not cut short when the
		// first of them hangs up.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		var pod corev1.Pod
		err := b.pods.Get(ctx, client.ObjectKey{Namespace: id.Namespace, Name: id.PodName}, &pod)
		return &pod, err
	})
	if apierrors.IsNotFound(err) {
		return b.refused.put(id, refuse(http.StatusForbidden, "forbidden", "Pod %s does not exist", id.Pod()))
	}
	if err != nil {
		return err
	}
	pod := v.(*corev1.Pod)
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	// Each refusal below is for good: a UID never comes back, and a Pod's
	// node, ServiceAccount and volumes do not change.
	var ref *refusal
	switch {
	case string(pod.UID) != id.PodUID:
		ref = refuse(http.StatusForbidden, "forbidden", "Pod %s is not the one the token is bound to (it was replaced)", id.Pod())
	case pod.Spec.NodeName != id.NodeName:
		ref = refuse(http.StatusForbidden, "forbidden", "Pod %s does not run on node %s, which the token names", id.Pod(), id.NodeName)
	case sa != id.ServiceAccount:
		ref = refuse(http.StatusForbidden, "forbidden", "Pod %s runs as ServiceAccount %s, not %s", id.Pod(), sa, id.ServiceAccount)
	case mountsAudience(pod, b.opts.Audience):
		ref = refuse(http.StatusForbidden, "forbidden", "Pod %s mounts a ServiceAccount token for audience %q itself: regcred serves only the kubelet", id.Pod(), b.opts.Audience)
	default:
		return nil
	}
	return b.refused.put(id, ref)
}

func mountsAudience(pod *corev1.Pod, audience string) bool {
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ServiceAccountToken != nil && s.ServiceAccountToken.Audience == audience {
				return true
			}
		}
	}
	return false
}
