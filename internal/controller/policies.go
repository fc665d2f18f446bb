package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/logkeys"
	"regcred.dev/regcred/internal/policy"
)

// The grant for these objects is the chart's: get, list, create, update
// and delete of mutatingadmissionpolicies and their bindings with
// podInjection=policy (writing admission policies is power over every
// Pod, so the webhook mode does not hold it), list and delete otherwise,
// so that switching back to the webhook removes what policy mode wrote.

// PolicyRender is the catalogue rendered as admission policies, once per
// catalogue version, shared by the writer and the credential controllers:
// a credential's PodInjection condition reads whether the policies carry
// it off the same rendering the writer writes, and a credential whose
// refusal changes because of another (a bound shared by a namespace's or
// by the cluster credentials) is woken to say so.
type PolicyRender struct {
	Catalogue *credential.Catalogue
	Options   policy.Options

	mu       sync.Mutex
	rendered bool
	version  uint64
	last     *policy.Rendered
	refused  map[credential.Key]string
	wakeups  *wakeups
}

// NewPolicyRender renders cat with opts.
func NewPolicyRender(cat *credential.Catalogue, opts policy.Options) *PolicyRender {
	return &PolicyRender{Catalogue: cat, Options: opts, wakeups: newWakeups()}
}

// Render is the rendering of the catalogue's current version.
func (p *PolicyRender) Render() *policy.Rendered {
	v := p.Catalogue.Version()
	p.mu.Lock()
	if p.rendered && p.version == v {
		r := p.last
		p.mu.Unlock()
		return r
	}
	p.mu.Unlock()
	r := policy.Render(p.Catalogue.Injection(), p.Options)
	refused := make(map[credential.Key]string, len(r.Refused))
	for _, x := range r.Refused {
		refused[x.Key] = x.Reason
	}
	var changed []credential.Key
	p.mu.Lock()
	if p.rendered && v < p.version {
		// A newer version was rendered meanwhile.
		r = p.last
		p.mu.Unlock()
		return r
	}
	for k, why := range refused {
		if p.refused[k] != why {
			changed = append(changed, k)
		}
	}
	for k := range p.refused {
		if _, still := refused[k]; !still {
			changed = append(changed, k)
		}
	}
	p.rendered, p.version, p.last, p.refused = true, v, r, refused
	p.mu.Unlock()
	for _, k := range changed {
		p.wakeups.wake(k)
	}
	return r
}

// Refusal is why the policies do not carry the credential, "" when they
// do (or when the catalogue does not hold it yet).
func (p *PolicyRender) Refusal(key credential.Key) string {
	p.Render()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused[key]
}

// PolicyWriter keeps the MutatingAdmissionPolicies and their bindings
// that inject Pods (regcred manager --pod-injection=policy) equal to the
// catalogue: it renders on every change of the catalogue, writes what
// differs, and deletes the generated objects it no longer renders. It
// runs on the leader only. With Remove (the webhook injects) it deletes
// every object it generated, once, and stops.
//
// It reads the objects through the API reader, by label, on each pass:
// a few objects, a pass only after a change, and no cache (and no watch
// permission) for a kind nobody else writes.
type PolicyWriter struct {
	Render *PolicyRender
	Client client.Client
	Reader client.Reader
	Remove bool
	// Prefix is the generated objects' (policy.Options.Prefix).
	Prefix string
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
	if w.Remove {
		return
	}
	w.Render.Catalogue.OnVersion(func() {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	})
}

// Start writes once the catalogue is loaded, then after every change;
// a failed pass is retried with backoff up to 30 s.
func (w *PolicyWriter) Start(ctx context.Context) error {
	if w.Remove {
		if err := w.Sync(ctx); err != nil && ctx.Err() == nil {
			// Without the grant (an older chart) there is nothing this
			// mode may do about them: said once.
			w.Log.Info("could not remove the admission policies an earlier --pod-injection=policy wrote; delete them with: kubectl delete mutatingadmissionpolicies,mutatingadmissionpolicybindings -l "+policy.LabelPolicy+"=true", "error", err.Error())
		}
		return nil
	}
	select {
	case <-w.Render.Catalogue.Synced():
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
// equal to the rendering (with Remove: deletes them all).
func (w *PolicyWriter) Sync(ctx context.Context) error {
	r := &policy.Rendered{}
	if !w.Remove {
		r = w.Render.Render()
		w.report(r.Refused)
	}
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
	if err := w.Reader.List(ctx, &bindings, generated); err != nil {
		return errors.Join(append(errs, fmt.Errorf("list MutatingAdmissionPolicyBindings: %w", err))...)
	}
	for i := range bindings.Items {
		if b := &bindings.Items[i]; !keep[b.Name] && w.ours(b) {
			if err := w.Client.Delete(ctx, b); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete MutatingAdmissionPolicyBinding %s: %w", b.Name, err))
			}
		}
	}
	var policies admissionregistrationv1.MutatingAdmissionPolicyList
	if err := w.Reader.List(ctx, &policies, generated); err != nil {
		return errors.Join(append(errs, fmt.Errorf("list MutatingAdmissionPolicies: %w", err))...)
	}
	for i := range policies.Items {
		if p := &policies.Items[i]; !keep[p.Name] && w.ours(p) {
			if err := w.Client.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete MutatingAdmissionPolicy %s: %w", p.Name, err))
				continue
			}
			w.Log.Info("removed an admission policy", "policy", p.Name)
		}
	}
	return errors.Join(errs...)
}

// generated selects the objects regcred generates.
var generated = client.MatchingLabels{policy.LabelPolicy: "true", policy.LabelManagedBy: "regcred"}

// ours: the name is this install's (another regcred with another prefix
// keeps its own).
func (w *PolicyWriter) ours(o client.Object) bool {
	prefix := cmp.Or(w.Prefix, policy.DefaultPrefix)
	return o.GetName() == prefix || strings.HasPrefix(o.GetName(), prefix+"-")
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

// report logs each newly refused credential once; its PodInjection
// condition and a Warning Event on it tell its owner.
func (w *PolicyWriter) report(refused []policy.Refusal) {
	now := map[credential.Key]string{}
	for _, r := range refused {
		now[r.Key] = r.Reason
		if w.refused[r.Key] != r.Reason {
			w.Log.Info("a credential is not carried by the admission policies: its Secret is not added to Pods", logkeys.Credential, r.Key.Display(), logkeys.Reason, r.Reason)
		}
	}
	w.refused = now
}

// ReasonPolicyTooLarge is the Event of a credential the admission
// policies cannot carry.
const ReasonPolicyTooLarge = "TooLargeForAdmissionPolicy"
