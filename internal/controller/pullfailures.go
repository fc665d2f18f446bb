package controller

import (
	"context"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/kubeletmsg"
	"regcred.dev/regcred/internal/logkeys"
)

// +kubebuilder:rbac:groups="",resources=events,verbs=list;watch

// Registry label values besides registry keys.
const (
	registryOther = "other"
	registryNone  = "none"
)

// PullFailureWatch counts the kubelet's pull-failure Events, and its
// successful pulls for the success rate. It watches only those
// (server-side field selectors on source, type and reason, one watch per
// reason), keeps each Event reduced to the few fields it reads, and counts
// on the leader only, so replicas do not add up.
type PullFailureWatch struct {
	Clientset kubernetes.Interface
	// Catalogue names the registries of the credentials.
	Catalogue *credential.Catalogue
	Log       logr.Logger

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
	return len(w.informers) == len(pullWatches)
}

// pullWatches are the Events watched: each reason with its type.
var pullWatches = func() []fields.Set {
	var out []fields.Set
	for _, reason := range kubeletmsg.PullEventReasons {
		out = append(out, fields.Set{"source": "kubelet", "type": corev1.EventTypeWarning, "reason": reason, "involvedObject.kind": "Pod"})
	}
	return append(out, fields.Set{"source": "kubelet", "type": corev1.EventTypeNormal, "reason": kubeletmsg.EventPulled, "involvedObject.kind": "Pod"})
}()

// NeedLeaderElection: one replica counts.
func (w *PullFailureWatch) NeedLeaderElection() bool { return true }

// Start runs the watches until ctx ends.
func (w *PullFailureWatch) Start(ctx context.Context) error {
	// An Event labelled before the catalogue holds the credentials would
	// count as "other".
	select {
	case <-w.Catalogue.Synced():
	case <-ctx.Done():
		return nil
	}
	var wg sync.WaitGroup
	for _, set := range pullWatches {
		sel := fields.SelectorFromSet(set).String()
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
	switch {
	case ev.Reason == kubeletmsg.EventPulled && !kubeletmsg.IsPullSuccessEvent(ev.Reason, msg):
		// "already present on machine", at every container start: no
		// pull, nothing to keep.
		msg = ""
	case len(msg) > 512:
		msg = strings.Clone(msg[:512])
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
	if kubeletmsg.IsPullSuccessEvent(ev.Reason, ev.Message) {
		countPull(w.registryLabel(ev.Namespace, kubeletmsg.ImageOfMessage(ev.Message)), "success", n)
		return
	}
	if !kubeletmsg.IsPullFailureEvent(ev.Reason, ev.Message) {
		return
	}
	if kubeletmsg.IsPullAttemptFailure(ev.Reason, ev.Message) {
		countPull(w.registryLabel(ev.Namespace, kubeletmsg.ImageOfMessage(ev.Message)), "failure", n)
	}
	reason := kubeletmsg.Classify(ev.Message)
	reg := registryNone
	if ev.Reason != kubeletmsg.EventMissingSecret {
		reg = w.registryLabel(ev.Namespace, kubeletmsg.ImageOfMessage(ev.Message))
	}
	pullFailures.WithLabelValues(reg, string(reason)).Add(float64(n))
	w.Log.V(1).Info("image pull failed", logkeys.Reason, reason, "registry", reg, logkeys.Namespace, ev.Namespace)
}

// countPull adds n pulls of a result, and makes the other result's series
// too: a series born at its first increment hides that increment from
// rate() and increase(), and a success rate needs both.
func countPull(registry, result string, n int) {
	other := "failure"
	if result == "failure" {
		other = "success"
	}
	imagePulls.WithLabelValues(registry, other).Add(0)
	imagePulls.WithLabelValues(registry, result).Add(float64(n))
}

// registryLabel is the registry key of a regcred credential that covers
// image for a Pod of namespace (its host part, as written), else "other":
// label values stay bounded by the credentials that exist, and a tenant's
// keys label only its own namespace's failures.
func (w *PullFailureWatch) registryLabel(namespace, image string) string {
	named, err := keyring.ParseImage(image)
	if err != nil {
		return registryOther
	}
	best := ""
	for _, key := range w.Catalogue.MatchingKeys(namespace, keyring.ParseTarget(named.Name())) {
		if label := keyHost(key); best == "" || label < best {
			best = label
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
