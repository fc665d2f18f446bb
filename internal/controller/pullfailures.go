package controller

import (
	"context"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/doctor"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/logkeys"
)

// +kubebuilder:rbac:groups="",resources=events,verbs=list;watch

var pullFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "regcred_image_pull_failures_total",
	Help: "Image pulls the kubelet reported as failed, from its Events, by registry (a registry key of a regcred credential, \"other\" for the rest, \"none\" for a missing pull Secret) and reason (regcred doctor's causes).",
}, []string{"registry", "reason"})

func init() { metrics.Registry.MustRegister(pullFailures) }

// Registry label values besides registry keys.
const (
	registryOther = "other"
	registryNone  = "none"
)

// PullFailureWatch counts the kubelet's pull-failure Events. It watches only
// those (server-side field selectors on source, type and reason, one watch
// per reason), keeps each Event reduced to the few fields it reads, and
// counts on the leader only, so replicas do not add up.
type PullFailureWatch struct {
	Clientset kubernetes.Interface
	// Reader lists credentials (the manager's cache).
	Reader client.Reader
	Log    logr.Logger

	mu        sync.Mutex
	informers []toolscache.SharedIndexInformer
}

// HasSynced reports whether every watch has listed what exists.
func (w *PullFailureWatch) HasSynced() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, inf := range w.informers {
		if !inf.HasSynced() {
			return false
		}
	}
	return len(w.informers) == len(doctor.PullEventReasons)
}

// NeedLeaderElection: one replica counts.
func (w *PullFailureWatch) NeedLeaderElection() bool { return true }

// Start runs the watches until ctx ends.
func (w *PullFailureWatch) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, reason := range doctor.PullEventReasons {
		sel := fields.SelectorFromSet(fields.Set{"source": "kubelet", "type": corev1.EventTypeWarning, "reason": reason, "involvedObject.kind": "Pod"}).String()
		lw := &toolscache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = sel
				return w.Clientset.CoreV1().Events("").List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = sel
				return w.Clientset.CoreV1().Events("").Watch(ctx, o)
			},
		}
		inf := toolscache.NewSharedIndexInformer(lw, &corev1.Event{}, 0, toolscache.Indexers{})
		if err := inf.SetTransform(slimEvent); err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerDetailedFuncs{
			AddFunc: func(obj any, initial bool) {
				if ev, ok := obj.(*corev1.Event); ok && !initial {
					w.count(ctx, ev, eventCount(ev))
				}
			},
			UpdateFunc: func(oldObj, newObj any) {
				old, ok1 := oldObj.(*corev1.Event)
				ev, ok2 := newObj.(*corev1.Event)
				if ok1 && ok2 {
					if d := eventCount(ev) - eventCount(old); d > 0 {
						w.count(ctx, ev, d)
					}
				}
			},
		}); err != nil {
			return err
		}
		w.mu.Lock()
		w.informers = append(w.informers, inf)
		w.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			inf.RunWithContext(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// slimEvent keeps what counting needs: an Event of the kubelet can hold a
// long message, and thousands of them may be around.
func slimEvent(obj any) (any, error) {
	ev, ok := obj.(*corev1.Event)
	if !ok {
		return obj, nil
	}
	msg := ev.Message
	if len(msg) > 512 {
		msg = msg[:512]
	}
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: ev.Namespace, Name: ev.Name, UID: ev.UID, ResourceVersion: ev.ResourceVersion},
		Reason:     ev.Reason, Message: msg, Count: ev.Count,
		Series: ev.Series,
	}, nil
}

// eventCount is how many times an Event has happened: its count, or its
// series' count (events.k8s.io style), at least 1.
func eventCount(ev *corev1.Event) int {
	n := int(ev.Count)
	if ev.Series != nil && int(ev.Series.Count) > n {
		n = int(ev.Series.Count)
	}
	return max(n, 1)
}

func (w *PullFailureWatch) count(ctx context.Context, ev *corev1.Event, n int) {
	if !doctor.IsPullFailureEvent(ev.Reason, ev.Message) {
		return
	}
	reason := doctor.Classify(ev.Message)
	reg := registryNone
	if ev.Reason != doctor.EventMissingSecret {
		reg = w.registryLabel(ctx, doctor.ImageOfMessage(ev.Message))
	}
	pullFailures.WithLabelValues(reg, string(reason)).Add(float64(n))
	w.Log.V(1).Info("image pull failed", logkeys.Reason, reason, "registry", reg, logkeys.Namespace, ev.Namespace)
}

// registryLabel is the registry key of a regcred credential that covers
// image (its host part, as written), else "other": label values stay
// bounded by the credentials that exist.
func (w *PullFailureWatch) registryLabel(ctx context.Context, image string) string {
	named, err := keyring.ParseImage(image)
	if err != nil {
		return registryOther
	}
	target := keyring.ParseTarget(named.Name())
	// Read-only: the cache's objects need no copy for every Event.
	var creds []*credential.Credential
	var cluster v1alpha1.ClusterRegistryCredentialList
	if err := w.Reader.List(ctx, &cluster, client.UnsafeDisableDeepCopy); err == nil {
		for i := range cluster.Items {
			creds = append(creds, credential.FromCluster(&cluster.Items[i]))
		}
	}
	var tenants v1alpha1.RegistryCredentialList
	if err := w.Reader.List(ctx, &tenants, client.UnsafeDisableDeepCopy); err == nil {
		for i := range tenants.Items {
			creds = append(creds, credential.FromNamespaced(&tenants.Items[i]))
		}
	}
	best := ""
	for _, c := range creds {
		for _, key := range c.Spec.Registries {
			m, _ := credential.NewMatcher("", []string{key})
			if !m.Matches(target) {
				continue
			}
			label := keyHost(key)
			if best == "" || label < best {
				best = label
			}
		}
	}
	if best == "" {
		return registryOther
	}
	return best
}

// keyHost is the host part of a registry key: "https://ghcr.io/acme" is
// "ghcr.io"; Docker Hub's many spellings are "docker.io".
func keyHost(key string) string {
	k := key
	if i := strings.Index(k, "://"); i >= 0 {
		k = k[i+3:]
	}
	host, _, _ := strings.Cut(k, "/")
	switch host {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return host
}
