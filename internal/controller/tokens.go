package controller

import (
	"context"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/credential"
)

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

// tokenEvents turns a token cache change (a refresh, an expiry, a new
// failure) into requests: the namespaces holding copies of the
// credentials using the token, so they are rewritten in place, and the
// credentials, so their status follows.
type tokenEvents struct {
	client client.Client
	// leading is set while this replica is the leader: only the leader
	// refreshes tokens in the background. Another replica's webhook may
	// still get a token on demand, which it drops at its refresh time.
	leading atomic.Bool

	mu          sync.Mutex
	namespaces  queue
	credentials map[credential.Kind]queue
}

func newTokenEvents(c client.Client) *tokenEvents {
	return &tokenEvents{client: c, credentials: map[credential.Kind]queue{}}
}

func (te *tokenEvents) namespaceSource() source.Source {
	return source.Func(func(_ context.Context, q queue) error {
		te.mu.Lock()
		te.namespaces = q
		te.mu.Unlock()
		return nil
	})
}

func (te *tokenEvents) credentialSource(kind credential.Kind) source.Source {
	return source.Func(func(_ context.Context, q queue) error {
		te.mu.Lock()
		te.credentials[kind] = q
		te.mu.Unlock()
		return nil
	})
}

// users lists the credentials using a token.
func (te *tokenEvents) users(ctx context.Context, key string) ([]credential.Key, error) {
	byToken := client.MatchingFields{indexTokenKey: key}
	var cluster v1alpha1.ClusterRegistryCredentialList
	if err := te.client.List(ctx, &cluster, byToken); err != nil {
		return nil, err
	}
	var namespaced v1alpha1.RegistryCredentialList
	if err := te.client.List(ctx, &namespaced, byToken); err != nil {
		return nil, err
	}
	out := make([]credential.Key, 0, len(cluster.Items)+len(namespaced.Items))
	for _, c := range cluster.Items {
		out = append(out, credential.Key{Kind: credential.KindCluster, Name: c.Name})
	}
	for _, c := range namespaced.Items {
		out = append(out, credential.Key{Kind: credential.KindNamespaced, Namespace: c.Namespace, Name: c.Name})
	}
	return out, nil
}

// inUse keeps a token refreshed while a credential uses it and this
// replica leads. A failed read keeps it too.
func (te *tokenEvents) inUse(key string) bool {
	if !te.leading.Load() {
		return false
	}
	users, err := te.users(context.Background(), key)
	return err != nil || len(users) > 0
}

func (te *tokenEvents) changed(key string) {
	ctx := context.Background()
	users, err := te.users(ctx, key)
	if err != nil {
		ctrl.Log.WithName("tokens").Error(err, "list the credentials of a refreshed token")
		return
	}
	te.mu.Lock()
	nsq, credq := te.namespaces, te.credentials
	te.mu.Unlock()
	allNamespaces := false
	for _, u := range users {
		if q := credq[u.Kind]; q != nil {
			q.Add(requestFor(u))
		}
		if u.Kind == credential.KindCluster {
			allNamespaces = true
		} else if nsq != nil {
			nsq.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: u.Namespace}})
		}
	}
	if allNamespaces && nsq != nil {
		for _, req := range namespaceRequests(ctrl.LoggerInto(ctx, ctrl.Log.WithName("tokens")), te.client) {
			nsq.Add(req)
		}
	}
}

// leader is a runnable that marks the replica as leading while it runs.
type leader struct{ te *tokenEvents }

func (l leader) Start(ctx context.Context) error {
	l.te.leading.Store(true)
	<-ctx.Done()
	l.te.leading.Store(false)
	return nil
}

// NeedLeaderElection: it starts when this replica is elected.
func (leader) NeedLeaderElection() bool { return true }

// tokenMetrics counts token requests.
type tokenMetrics struct{}

func (tokenMetrics) TokenFetched(kind string, reason cloud.Reason) {
	tokenRequests.WithLabelValues(kind).Inc()
	if reason != "" {
		tokenRequestErrors.WithLabelValues(kind, string(reason)).Inc()
	}
}
