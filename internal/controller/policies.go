package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/logkeys"
	"regcred.dev/regcred/internal/policy"
)

// The grant for these objects (get, list, create, update, delete of
// mutatingadmissionpolicies and mutatingadmissionpolicybindings) is the
// chart's, only with podInjection=policy: writing admission policies is
// power over every Pod, so the webhook mode does not hold it.

// PolicyWriter keeps the MutatingAdmissionPolicies and their bindings
// that inject Pods (regcred manager --pod-injection=policy) equal to the
// catalogue: it renders on every change of the catalogue, writes what
// differs, and deletes the generated objects it no longer renders. It
// runs on the leader only.
//
// It reads the objects through the API reader, by label, on each pass:
// a handful of objects, a pass only after a change, and no cache (and no
// watch permission) for a kind nobody else writes.
type PolicyWriter struct {
	Catalogue *credential.Catalogue
	Client    client.Client
	Reader    client.Reader
	Options   policy.Options
	// Events records a refused credential on its object.
	Events events.EventRecorder
	Log    logr.Logger

	wake    chan struct{}
	refused map[credential.Key]string
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (w *PolicyWriter) NeedLeaderElection() bool { return true }

// Register hooks the writer to the catalogue; call before the catalogue
// is fed.
func (w *PolicyWriter) Register() {
	w.wake = make(chan struct{}, 1)
	w.Catalogue.OnVersion(func() {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	})
}

// Start writes once the catalogue is loaded, then after every change;
// a failed pass is retried with backoff up to 30 s.
func (w *PolicyWriter) Start(ctx context.Context) error {
	select {
	case <-w.Catalogue.Synced():
	case <-ctx.Done():
		return nil
	}
	backoff := time.Duration(0)
	for {
		if err := w.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			backoff = min(max(2*backoff, 250*time.Millisecond), 30*time.Second)
			w.Log.Error(err, "admission policies not written; retrying", "after", backoff.String())
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
		}
	}
}

// Sync renders the catalogue and makes the cluster's generated objects
// equal to the rendering.
func (w *PolicyWriter) Sync(ctx context.Context) error {
	r := policy.Render(w.Catalogue.Injection(), w.Options)
	w.report(r.Refused)
	// Bindings go after their policies and before stale policies go, so
	// a Pod never meets a binding without its policy.
	// One object the API server refuses must not hold back the others:
	// each is written, and the errors are returned together.
	var errs []error
	for i, p := range r.Policies {
		if err := w.apply(ctx, p, &admissionregistrationv1.MutatingAdmissionPolicy{}); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := w.apply(ctx, r.Bindings[i], &admissionregistrationv1.MutatingAdmissionPolicyBinding{}); err != nil {
			errs = append(errs, err)
		}
	}
	keep := map[string]bool{}
	for _, p := range r.Policies {
		keep[p.Name] = true
	}
	var bindings admissionregistrationv1.MutatingAdmissionPolicyBindingList
	if err := w.Reader.List(ctx, &bindings, client.MatchingLabels{policy.LabelPolicy: "true"}); err != nil {
		return fmt.Errorf("list MutatingAdmissionPolicyBindings: %w", err)
	}
	for i := range bindings.Items {
		if b := &bindings.Items[i]; !keep[b.Name] {
			if err := w.Client.Delete(ctx, b); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete MutatingAdmissionPolicyBinding %s: %w", b.Name, err)
			}
		}
	}
	var policies admissionregistrationv1.MutatingAdmissionPolicyList
	if err := w.Reader.List(ctx, &policies, client.MatchingLabels{policy.LabelPolicy: "true"}); err != nil {
		return fmt.Errorf("list MutatingAdmissionPolicies: %w", err)
	}
	for i := range policies.Items {
		if p := &policies.Items[i]; !keep[p.Name] {
			if err := w.Client.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete MutatingAdmissionPolicy %s: %w", p.Name, err)
			}
			w.Log.Info("removed an admission policy", "policy", p.Name)
		}
	}
	return errors.Join(errs...)
}

// apply creates want or updates the object of its name to it.
func (w *PolicyWriter) apply(ctx context.Context, want client.Object, cur client.Object) error {
	err := w.Reader.Get(ctx, client.ObjectKeyFromObject(want), cur)
	if apierrors.IsNotFound(err) {
		if err := w.Client.Create(ctx, want); err != nil {
			return fmt.Errorf("create %T %s: %w", want, want.GetName(), err)
		}
		w.Log.Info("wrote an admission policy object", "kind", fmt.Sprintf("%T", want), "name", want.GetName())
		return nil
	}
	if err != nil {
		return err
	}
	same := maps.Equal(cur.GetLabels(), want.GetLabels())
	switch c := cur.(type) {
	case *admissionregistrationv1.MutatingAdmissionPolicy:
		same = same && equality.Semantic.DeepEqual(c.Spec, want.(*admissionregistrationv1.MutatingAdmissionPolicy).Spec)
	case *admissionregistrationv1.MutatingAdmissionPolicyBinding:
		same = same && equality.Semantic.DeepEqual(c.Spec, want.(*admissionregistrationv1.MutatingAdmissionPolicyBinding).Spec)
	}
	if same {
		return nil
	}
	want.SetResourceVersion(cur.GetResourceVersion())
	if err := w.Client.Update(ctx, want); err != nil {
		return fmt.Errorf("update %T %s: %w", want, want.GetName(), err)
	}
	return nil
}

// report tells of each newly refused credential once, with a Warning
// Event on it and a log line.
func (w *PolicyWriter) report(refused []policy.Refusal) {
	now := map[credential.Key]string{}
	for _, r := range refused {
		now[r.Key] = r.Reason
		if w.refused[r.Key] == r.Reason {
			continue
		}
		w.Log.Info("a credential is not carried by the admission policies: its Secret is not added to Pods", logkeys.Credential, r.Key.Display(), logkeys.Reason, r.Reason)
		// A credential refused on its own is told by its PodInjection
		// condition and its Event (the credential controller's); this
		// one tells of those refused for the policies' shared bound.
		if w.Events != nil {
			if e := w.Catalogue.Get(r.Key); e != nil && PolicyRefusal(e, w.Options) == "" {
				w.Events.Eventf(e.Object, nil, corev1.EventTypeWarning, ReasonPolicyTooLarge, "InjectPods", "not carried by the admission policies, so Pods do not get its Secret: %s", r.Reason)
			}
		}
	}
	w.refused = now
}

// ReasonPolicyTooLarge is the Event of a credential the admission
// policies cannot carry.
const ReasonPolicyTooLarge = "TooLargeForAdmissionPolicy"

// PolicyRefusal is why the admission policies cannot carry the
// credential, "" when they can: what its status says.
func PolicyRefusal(e *credential.Entry, opts policy.Options) string {
	r := policy.Render(credential.Injection{Credentials: []*credential.Entry{e}}, opts)
	if i := slices.IndexFunc(r.Refused, func(x policy.Refusal) bool { return x.Key == e.Key }); i >= 0 {
		return r.Refused[i].Reason
	}
	return ""
}
