package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/logkeys"
	"regcred.dev/regcred/internal/redact"
	"regcred.dev/regcred/internal/source"
)

// NamespaceReconciler makes one namespace's managed Secrets and
// ServiceAccount entries match the credentials that apply to it, as the
// catalogue compiled them.
type NamespaceReconciler struct {
	client           client.Client
	apiReader        client.Reader
	regcredNamespace string
	catalogue        *credential.Catalogue
	renders          *renderer
	failures         *failures
	recorder         events.EventRecorder
}

// Reconcile implements reconcile.Reconciler: write the Secrets of the
// credentials acting in the namespace, remove those of credentials that
// no longer do, then make the ServiceAccounts list what is in place.
func (r *NamespaceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx).WithValues(logkeys.Namespace, req.Name)
	ctx = ctrl.LoggerInto(ctx, log)

	var ns corev1.Namespace
	if err := r.client.Get(ctx, req.NamespacedName, &ns); err != nil {
		if apierrors.IsNotFound(err) {
			r.failures.clearNamespace(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !ns.DeletionTimestamp.IsZero() || ns.Status.Phase == corev1.NamespaceTerminating {
		// The namespace controller is deleting its Secrets and
		// ServiceAccounts: removing regcred's copies and entries first is
		// only writes (at 10,000 namespaces' churn, a third of them) that
		// the API server may refuse anyway. The credentials stop counting
		// the namespace (credential.Scope) without them.
		r.failures.clearNamespace(req.Name)
		return ctrl.Result{}, nil
	}
	s, err := r.newNamespaceSync(ctx, &ns)
	if err != nil {
		return ctrl.Result{}, err
	}
	for _, c := range s.applicable(ctx) {
		s.writeSecret(ctx, c)
	}
	s.removeUnclaimed(ctx)
	if err := r.syncServiceAccounts(ctx, ns.Name, s.ready); err != nil {
		s.errs = append(s.errs, err)
	}
	if err := errors.Join(s.errs...); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: s.requeue}, nil
}

// namespaceSync is one pass over one namespace.
type namespaceSync struct {
	r        *NamespaceReconciler
	ns       *corev1.Namespace
	all      []*credential.Entry       // every credential that could act here
	existing map[string]*corev1.Secret // managed Secrets, by name
	claim    map[string]*credential.Entry
	ready    map[string]*credential.Entry // Secrets in place, ours
	errs     []error
	requeue  time.Duration
}

func (r *NamespaceReconciler) newNamespaceSync(ctx context.Context, ns *corev1.Namespace) (*namespaceSync, error) {
	var managed corev1.SecretList
	if err := r.client.List(ctx, &managed, client.InNamespace(ns.Name), client.MatchingLabels{credential.LabelManaged: "true"}); err != nil {
		return nil, err
	}
	s := &namespaceSync{r: r, ns: ns, all: r.catalogue.Candidates(ns.Name), existing: map[string]*corev1.Secret{},
		claim: map[string]*credential.Entry{}, ready: map[string]*credential.Entry{}}
	for i := range managed.Items {
		s.existing[managed.Items[i].Name] = &managed.Items[i]
	}
	return s, nil
}

// applicable are the credentials acting here with pull Secrets, in the
// order they claim Secret names; the others' failures here are cleared. A
// credential delivered to nodes only claims no name, so its old copies
// and ServiceAccount entries go like those of one that stopped acting.
func (s *namespaceSync) applicable(ctx context.Context) []*credential.Entry {
	out := make([]*credential.Entry, 0, len(s.all))
	for _, c := range s.all {
		ok, err := c.Applies(s.ns)
		switch {
		case !c.DeliversSecrets():
			s.r.failures.set(c.Key, s.ns.Name, "")
		case err != nil:
			s.r.fail(ctx, c.Credential, s.ns.Name, err.Error())
		case ok:
			out = append(out, c)
		default:
			s.r.failures.set(c.Key, s.ns.Name, "")
		}
	}
	claimOrder(out, s.existing)
	return out
}

// writeSecret makes c's Secret hold its source, unless another credential
// claimed the name first or the source cannot be read.
func (s *namespaceSync) writeSecret(ctx context.Context, c *credential.Entry) {
	r, name := s.r, c.SecretName()
	if other, taken := s.claim[name]; taken {
		r.fail(ctx, c.Credential, s.ns.Name, fmt.Sprintf("Secret name %q is also used by %s; give one of them another spec.secretName", name, other.Key.String()))
		return
	}
	s.claim[name] = c
	src, cur := r.renders.get(ctx, c.Credential), s.existing[name]
	if src.Err != nil {
		// A bad source leaves existing copies exactly as they are; the
		// credential controller reports it.
		s.keepIfOwned(c, cur)
		r.failures.set(c.Key, s.ns.Name, "")
		if src.Err.Reason == source.Unavailable {
			s.errs = append(s.errs, src.Err)
		}
		return
	}
	switch outcome, err := r.ensureSecret(ctx, c.Credential, s.ns, name, src.Data, cur, FieldManagerController); outcome {
	case secretReady:
		s.ready[name] = c
	case secretStalled:
		// Only regcred's own Secrets are watched: the foreign one's
		// removal may send no event.
		s.requeue = conflictRetry
	case secretFailed:
		s.errs = append(s.errs, err)
		// A failed write (a conflict, a timeout) leaves the Secret that is
		// there in place: so are the ServiceAccount entries that point at
		// it, or Pods created until the retry lose it.
		s.keepIfOwned(c, cur)
	}
}

func (s *namespaceSync) keepIfOwned(c *credential.Entry, cur *corev1.Secret) {
	if c.Owns(cur) {
		s.ready[c.SecretName()] = c
	}
}

// removeUnclaimed removes managed Secrets no applicable credential
// claims. A claimed name is kept whoever holds it now: writeSecret
// repaired it or reported why it could not. Only a Secret that a
// credential of this namespace really owns is removed; one that merely
// carries the label (or a forged annotation) is not regcred's and is left
// alone.
func (s *namespaceSync) removeUnclaimed(ctx context.Context) {
	for name, sec := range s.existing {
		if _, claimed := s.claim[name]; claimed || !ownedByAny(s.all, sec) || !sec.DeletionTimestamp.IsZero() {
			continue
		}
		if err := s.r.removeFromServiceAccounts(ctx, s.ns.Name, name); err != nil {
			s.errs = append(s.errs, err)
			continue
		}
		if err := s.r.deleteSecret(ctx, sec); err != nil {
			s.errs = append(s.errs, err)
		}
	}
}

// claimOrder sorts the credentials that want a Secret in one namespace in
// the order they claim names: those that already own their Secret first,
// so two credentials asking for one name do not take it from each other,
// then by key (so a ClusterRegistryCredential comes before a
// RegistryCredential). The namespace controller and the webhook's
// EnsureSecret decide with it alike.
func claimOrder(creds []*credential.Entry, existing map[string]*corev1.Secret) {
	sort.SliceStable(creds, func(i, j int) bool {
		oi, oj := owns(existing, creds[i]), owns(existing, creds[j])
		if oi != oj {
			return oi
		}
		return creds[i].Key.String() < creds[j].Key.String()
	})
}

func owns(existing map[string]*corev1.Secret, c *credential.Entry) bool {
	return c.Owns(existing[c.SecretName()])
}

// ownedByAny reports whether one of creds owns s.
func ownedByAny(creds []*credential.Entry, s *corev1.Secret) bool {
	for _, c := range creds {
		if c.Owns(s) {
			return true
		}
	}
	return false
}

func (r *NamespaceReconciler) fail(ctx context.Context, c *credential.Credential, namespace, message string) {
	// API errors quote what a tenant wrote (names, webhook answers): bound
	// them before they reach the log, the Event and status.failures.
	message = redact.Message(message)
	if r.failures.set(c.Key, namespace, message) {
		ctrl.LoggerFrom(ctx).Info("sync failed", logkeys.Credential, c.Key.String(), logkeys.Reason, message)
		r.recorder.Eventf(c.Object, nil, corev1.EventTypeWarning, v1alpha1.ReasonSyncFailed, "Sync", "namespace %s: %s", namespace, message)
	}
}

// apiReason shortens an API error to its status message.
func apiReason(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Message
	}
	return err.Error()
}
