package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/logkeys"
	"regcred.dev/regcred/internal/redact"
)

// maxFailuresInStatus bounds status.failures.
const maxFailuresInStatus = 10

// CredentialReconciler resolves a credential's source and reports its
// status; for one kind (ClusterRegistryCredential or RegistryCredential).
type CredentialReconciler struct {
	kind             credential.Kind
	client           client.Client
	regcredNamespace string
	renders          *renderer
	failures         *failures
	recorder         events.EventRecorder
	verifier         *verifier
}

// Reconcile implements reconcile.Reconciler.
func (r *CredentialReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := credential.Key{Kind: r.kind, Namespace: req.Namespace, Name: req.Name}
	c, err := getCredential(ctx, r.client, key)
	if apierrors.IsNotFound(err) {
		r.failures.forget(key)
		r.renders.forget(key)
		deleteCredentialMetrics(key)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	log := ctrl.LoggerFrom(ctx).WithValues(logkeys.Credential, c.Key.String())
	ctx = ctrl.LoggerInto(ctx, log)

	copies, err := r.copies(ctx, c)
	if err != nil {
		return ctrl.Result{}, err
	}

	if c.Deleting() {
		// The namespace controller removes the copies and ServiceAccount
		// entries of a deleted credential; each removal wakes this one up.
		// A copy already being deleted counts as removed: a finalizer
		// someone else put on it must not hold the credential forever.
		pending := slices.DeleteFunc(copies, func(s corev1.Secret) bool { return !s.DeletionTimestamp.IsZero() })
		if len(pending) > 0 {
			log.V(1).Info("waiting for cleanup", logkeys.Count, len(pending))
			return ctrl.Result{}, r.updateStatus(ctx, c, func(st *v1alpha1.CredentialStatus) {
				meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse,
					Reason: v1alpha1.ReasonDeleting, Message: fmt.Sprintf("removing the Secret from %d namespaces", len(pending)), ObservedGeneration: c.Object.GetGeneration()})
			})
		}
		if controllerutil.ContainsFinalizer(c.Object, credential.Finalizer) {
			patch := client.MergeFrom(c.Object.DeepCopyObject().(client.Object))
			controllerutil.RemoveFinalizer(c.Object, credential.Finalizer)
			if err := r.client.Patch(ctx, c.Object, patch); err != nil && !apierrors.IsNotFound(err) {
				return ctrl.Result{}, err
			}
			syncWrites.WithLabelValues("remove_finalizer").Inc()
			log.Info("cleanup done")
		}
		r.failures.forget(c.Key)
		r.renders.forget(c.Key)
		r.verifier.forget(c.Object.GetUID())
		deleteCredentialMetrics(c.Key)
		return ctrl.Result{}, nil
	}

	if !controllerutil.ContainsFinalizer(c.Object, credential.Finalizer) {
		patch := client.MergeFrom(c.Object.DeepCopyObject().(client.Object))
		controllerutil.AddFinalizer(c.Object, credential.Finalizer)
		if err := r.client.Patch(ctx, c.Object, patch); err != nil {
			return ctrl.Result{}, err
		}
		syncWrites.WithLabelValues("add_finalizer").Inc()
	}

	desired, err := r.desiredNamespaces(ctx, c)
	if err != nil {
		return ctrl.Result{}, err
	}
	src := r.renders.get(ctx, c)
	var synced int32
	for _, s := range copies {
		if !desired[s.Namespace] {
			continue
		}
		if src.Err != nil || src.current(s.Data[corev1.DockerConfigJsonKey]) {
			synced++
		}
	}
	fails := r.failures.get(c.Key, func(ns string) bool { return desired[ns] })

	cond := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: c.Object.GetGeneration()}
	switch {
	case src.Err != nil:
		cond.Status, cond.Reason = metav1.ConditionFalse, string(src.Err.Reason)
		cond.Message = src.Err.Message + "; existing copies are left as they are"
	case len(fails) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha1.ReasonSyncFailed
		cond.Message = fmt.Sprintf("%d of %d namespaces failed; %s: %s", len(fails), len(desired), fails[0].Namespace, fails[0].Message)
	case len(desired) == 0:
		cond.Status, cond.Reason = metav1.ConditionTrue, v1alpha1.ReasonNoNamespaces
		cond.Message = "no namespace is selected"
	case int(synced) < len(desired):
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha1.ReasonProgressing
		cond.Message = fmt.Sprintf("Secret %s synced to %d of %d namespaces", c.SecretName(), synced, len(desired))
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, v1alpha1.ReasonSynced
		cond.Message = fmt.Sprintf("Secret %s synced to %d namespaces", c.SecretName(), synced)
	}
	if src.Err == nil && src.Token != nil && src.Token.RefreshErr != nil {
		// The last good token still serves: say so, and why the next one
		// did not come.
		cond.Message += fmt.Sprintf("; refreshing the token failed (%s): %s; the token in the Secrets expires at %s",
			src.Token.RefreshErr.Reason, src.Token.RefreshErr.Message, src.Token.ExpiresAt.UTC().Format(time.RFC3339))
	}
	// Source and token errors carry servers' text: one line, bounded.
	cond.Message = redact.Message(cond.Message)

	before := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
	if before == nil || before.Status != cond.Status || before.Reason != cond.Reason {
		eventType := corev1.EventTypeNormal
		if cond.Status != metav1.ConditionTrue && cond.Reason != v1alpha1.ReasonProgressing {
			eventType = corev1.EventTypeWarning
		}
		if cond.Reason != v1alpha1.ReasonProgressing {
			r.recorder.Eventf(c.Object, nil, eventType, cond.Reason, "Reconcile", "%s", cond.Message)
		}
		log.Info("ready condition changed", logkeys.Status, cond.Status, logkeys.Reason, cond.Reason)
	}
	if src.Err == nil && src.Token != nil && src.Token.RefreshErr != nil && (before == nil || before.Message != cond.Message) {
		r.recorder.Eventf(c.Object, nil, corev1.EventTypeWarning, string(src.Token.RefreshErr.Reason), "RefreshToken",
			"refreshing the token failed: %s; the current token expires at %s", redact.Message(src.Token.RefreshErr.Message), src.Token.ExpiresAt.UTC().Format(time.RFC3339))
	}

	var (
		verified    *metav1.Condition
		verifyState *v1alpha1.VerifyStatus
		result      ctrl.Result
	)
	if c.Spec.Verify != nil && src.Err == nil {
		var next time.Time
		verified, verifyState, next = r.verifier.result(ctx, c, src.Data)
		if cond := verified; cond != nil {
			if old := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionVerified); old == nil || old.Status != cond.Status || old.Reason != cond.Reason {
				eventType := corev1.EventTypeNormal
				if cond.Status != metav1.ConditionTrue {
					eventType = corev1.EventTypeWarning
				}
				r.recorder.Eventf(c.Object, nil, eventType, "Verify"+cond.Reason, "Verify", "%s", cond.Message)
				log.Info("verified condition changed", logkeys.Status, cond.Status, logkeys.Reason, cond.Reason)
			}
		}
		result.RequeueAfter = time.Until(next) + time.Second
	}

	err = r.updateStatus(ctx, c, func(st *v1alpha1.CredentialStatus) {
		st.ObservedGeneration = c.Object.GetGeneration()
		switch {
		case c.Spec.Verify == nil:
			meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionVerified)
			st.Verify = nil
		case verified != nil:
			meta.SetStatusCondition(&st.Conditions, *verified)
			st.Verify = verifyState
		}
		meta.SetStatusCondition(&st.Conditions, cond)
		st.SecretName = c.SecretName()
		st.SourceVersion = src.Version
		switch {
		case src.Token != nil:
			st.Token = &v1alpha1.TokenStatus{ExpiresAt: timeOf(src.Token.ExpiresAt), RefreshedAt: timeOf(src.Token.RefreshedAt), NextRefreshAt: timeOf(src.Token.RefreshAt)}
		case src.Err == nil:
			st.Token = nil
		}
		st.Namespaces = v1alpha1.NamespaceCounts{
			Desired: int32(len(desired)), Synced: synced, Failed: int32(len(fails)),
			Summary: fmt.Sprintf("%d/%d", synced, len(desired)),
		}
		st.Failures = nil
		for i, f := range fails {
			if i == maxFailuresInStatus {
				break
			}
			st.Failures = append(st.Failures, v1alpha1.NamespaceFailure{Namespace: f.Namespace, Message: redact.Message(f.Message)})
		}
	})

	ready := 0.0
	if cond.Status == metav1.ConditionTrue {
		ready = 1
	}
	credentialReady.WithLabelValues(string(c.Kind), c.Namespace, c.Name).Set(ready)
	if src.Token != nil {
		credentialExpiry.WithLabelValues(string(c.Kind), c.Namespace, c.Name).Set(float64(src.Token.ExpiresAt.Unix()))
	}
	credentialNamespaces.WithLabelValues(string(c.Kind), c.Namespace, c.Name, "desired").Set(float64(len(desired)))
	credentialNamespaces.WithLabelValues(string(c.Kind), c.Namespace, c.Name, "synced").Set(float64(synced))
	credentialNamespaces.WithLabelValues(string(c.Kind), c.Namespace, c.Name, "failed").Set(float64(len(fails)))
	if c.Spec.Verify == nil {
		setVerifiedMetric(c, nil)
	} else if verified != nil {
		setVerifiedMetric(c, verified)
	}
	return result, err
}

// timeOf is a status time, to the second as the API keeps it.
func timeOf(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}

// copies are the managed Secrets rendered from the credential: those it
// really owns (credential.Credential.Owns), not every Secret whose
// annotation names it, which anyone writing Secrets can forge.
func (r *CredentialReconciler) copies(ctx context.Context, c *credential.Credential) ([]corev1.Secret, error) {
	var list corev1.SecretList
	opts := []client.ListOption{client.MatchingFields{indexOwner: c.Key.String()}}
	if c.Kind == credential.KindNamespaced {
		opts = append(opts, client.InNamespace(c.Namespace))
	}
	if err := r.client.List(ctx, &list, opts...); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(list.Items, func(s corev1.Secret) bool { return !c.Owns(&s) }), nil
}

func (r *CredentialReconciler) desiredNamespaces(ctx context.Context, c *credential.Credential) (map[string]bool, error) {
	out := map[string]bool{}
	if c.Kind == credential.KindNamespaced {
		var ns corev1.Namespace
		if err := r.client.Get(ctx, client.ObjectKey{Name: c.Namespace}, &ns); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		if ok, _ := c.AppliesTo(&ns, r.regcredNamespace); ok {
			out[ns.Name] = true
		}
		return out, nil
	}
	// The selector is parsed once, not once per namespace.
	scope, err := c.Scope(r.regcredNamespace)
	if err != nil {
		return nil, err
	}
	var list corev1.NamespaceList
	if err := r.client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	for i := range list.Items {
		if scope.Applies(&list.Items[i]) {
			out[list.Items[i].Name] = true
		}
	}
	return out, nil
}

// updateStatus writes the status only when it changed.
func (r *CredentialReconciler) updateStatus(ctx context.Context, c *credential.Credential, change func(*v1alpha1.CredentialStatus)) error {
	orig := c.Object.DeepCopyObject().(client.Object)
	before := c.Status.DeepCopy()
	change(c.Status)
	if equality.Semantic.DeepEqual(before, c.Status) {
		return nil
	}
	// The optimistic lock turns a write based on a stale cache into a
	// conflict and a retry, instead of a patch that misses fields.
	if err := r.client.Status().Patch(ctx, c.Object, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(err)
	}
	syncWrites.WithLabelValues("update_status").Inc()
	return nil
}
