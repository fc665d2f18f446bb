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
// ServiceAccount entries match the credentials that apply to it.
type NamespaceReconciler struct {
	client           client.Client
	apiReader        client.Reader
	regcredNamespace string
	renders          *renderer
	failures         *failures
	recorder         events.EventRecorder
}

// Reconcile implements reconcile.Reconciler.
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

	all, err := r.credentialsIn(ctx, ns.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	var managed corev1.SecretList
	if err := r.client.List(ctx, &managed, client.InNamespace(ns.Name), client.MatchingLabels{credential.LabelManaged: "true"}); err != nil {
		return ctrl.Result{}, err
	}
	existing := map[string]*corev1.Secret{}
	for i := range managed.Items {
		existing[managed.Items[i].Name] = &managed.Items[i]
	}

	// Credentials that already own their Secret claim its name first, so
	// two credentials asking for one name do not take it from each other.
	applicable := make([]*credential.Credential, 0, len(all))
	for _, c := range all {
		ok, err := c.AppliesTo(&ns, r.regcredNamespace)
		if err != nil {
			r.fail(ctx, c, ns.Name, err.Error())
			continue
		}
		if ok {
			applicable = append(applicable, c)
		} else {
			r.failures.set(c.Key, ns.Name, "")
		}
	}
	claimOrder(applicable, existing)

	var (
		errs    []error
		requeue time.Duration
		claim   = map[string]*credential.Credential{} // Secret name -> credential
		ready   = map[string]*credential.Credential{} // Secrets in place, ours
	)
	for _, c := range applicable {
		name := c.SecretName()
		if other, taken := claim[name]; taken {
			r.fail(ctx, c, ns.Name, fmt.Sprintf("Secret name %q is also used by %s; give one of them another spec.secretName", name, other.Key.String()))
			continue
		}
		claim[name] = c
		src := r.renders.get(ctx, c)
		cur := existing[name]
		if src.Err != nil {
			// A bad source leaves existing copies exactly as they are; the
			// credential controller reports it.
			if c.Owns(cur) {
				ready[name] = c
			}
			r.failures.set(c.Key, ns.Name, "")
			if src.Err.Reason == source.Unavailable {
				errs = append(errs, src.Err)
			}
			continue
		}
		switch outcome, err := r.ensureSecret(ctx, c, &ns, name, src.Data, cur, FieldManagerController); outcome {
		case secretReady:
			ready[name] = c
		case secretStalled:
			// Only regcred's own Secrets are watched: the foreign one's
			// removal may send no event.
			requeue = conflictRetry
		case secretFailed:
			errs = append(errs, err)
			// A failed write (a conflict, a timeout) leaves the Secret
			// that is there in place: so are the ServiceAccount entries
			// that point at it, or Pods created until the retry lose it.
			if c.Owns(cur) {
				ready[name] = c
			}
		}
	}

	// Remove managed Secrets no applicable credential claims. A claimed
	// name is kept whoever holds it now: ensureSecret repaired it or
	// reported why it could not. Only a Secret that a credential of this
	// namespace really owns is removed; one that merely carries the label
	// (or a forged annotation) is not regcred's and is left alone.
	for name, s := range existing {
		if _, claimed := claim[name]; claimed || !ownedByAny(all, s) || !s.DeletionTimestamp.IsZero() {
			continue
		}
		if err := r.removeFromServiceAccounts(ctx, ns.Name, name); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := r.deleteSecret(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}

	if err := r.syncServiceAccounts(ctx, ns.Name, ready); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// claimOrder sorts the credentials that want a Secret in one namespace in
// the order they claim names: those that already own their Secret first,
// so two credentials asking for one name do not take it from each other,
// then by key (so a ClusterRegistryCredential comes before a
// RegistryCredential). The namespace controller and the webhook's
// EnsureSecret decide with it alike.
func claimOrder(creds []*credential.Credential, existing map[string]*corev1.Secret) {
	sort.SliceStable(creds, func(i, j int) bool {
		oi, oj := owns(existing, creds[i]), owns(existing, creds[j])
		if oi != oj {
			return oi
		}
		return creds[i].Key.String() < creds[j].Key.String()
	})
}

func owns(existing map[string]*corev1.Secret, c *credential.Credential) bool {
	return c.Owns(existing[c.SecretName()])
}

// ownedByAny reports whether one of creds owns s.
func ownedByAny(creds []*credential.Credential, s *corev1.Secret) bool {
	for _, c := range creds {
		if c.Owns(s) {
			return true
		}
	}
	return false
}

// credentialsIn lists every credential that could act in namespace.
func (r *NamespaceReconciler) credentialsIn(ctx context.Context, namespace string) ([]*credential.Credential, error) {
	var cluster v1alpha1.ClusterRegistryCredentialList
	if err := r.client.List(ctx, &cluster); err != nil {
		return nil, err
	}
	var namespaced v1alpha1.RegistryCredentialList
	if err := r.client.List(ctx, &namespaced, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	out := make([]*credential.Credential, 0, len(cluster.Items)+len(namespaced.Items))
	for i := range cluster.Items {
		out = append(out, credential.FromCluster(&cluster.Items[i]))
	}
	for i := range namespaced.Items {
		out = append(out, credential.FromNamespaced(&namespaced.Items[i]))
	}
	return out, nil
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
