package controller

import (
	"context"
	"fmt"
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
	"regcred.dev/regcred/internal/source"
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
	// copies is the managed Secrets of this kind by owner.
	copies *copyIndex
	// podPolicies: Pods are injected by admission policies with these
	// options; nil: by the webhook.
	podPolicies *PolicyRender
}

// Reconcile implements reconcile.Reconciler: the steps of
// credentialSteps, in order, then one status write and the metrics.
func (r *CredentialReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := credential.Key{Kind: r.kind, Namespace: req.Namespace, Name: req.Name}
	c, err := getCredential(ctx, r.client, key)
	if apierrors.IsNotFound(err) {
		r.forget(key)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues(logkeys.Credential, c.Key.String()))
	st := &credentialState{c: c}
	res, err := runSteps(ctx, st, r.credentialSteps())
	if err != nil {
		// Transient: nothing is written, and the queue retries with backoff.
		return ctrl.Result{}, err
	}
	return r.summarizeAndPatch(ctx, st, res)
}

// credentialSteps are the steps of one reconcile, in order.
func (r *CredentialReconciler) credentialSteps() []credentialStep {
	return []credentialStep{
		r.listCopies,
		r.finalize,
		r.ensureFinalizer,
		r.selectNamespaces,
		r.resolveSource,
		r.countCopies,
		buildReady,
		r.emitReadyEvents,
		r.verify,
		r.podInjection,
	}
}

// credentialState is what the steps of one reconcile learn about a
// credential, and what its status write reports.
type credentialState struct {
	c *credential.Credential
	// copies are the managed Secrets the credential owns: the cache's
	// own objects, read only.
	copies []*corev1.Secret
	// desired are the namespaces the credential applies to.
	desired map[string]bool
	src     *rendered
	// synced counts the copies in desired namespaces that are up to date.
	synced int32
	fails  []failure
	ready  metav1.Condition
	// verified and verifyState are a probe's result to write; nil when
	// the status already holds the latest or no probe ran.
	verified    *metav1.Condition
	verifyState *v1alpha1.VerifyStatus
	// injection is the PodInjection condition; nil removes it.
	injection *metav1.Condition
}

// credentialStep is one step of a reconcile. An error is transient: the
// reconcile stops, writes nothing and is retried with backoff.
type credentialStep func(ctx context.Context, st *credentialState) (stepResult, error)

// stepOutcome is how a reconcile goes on after a step; a later step's
// outcome counts only when it is graver.
type stepOutcome int

const (
	// stepContinue: the next step runs.
	stepContinue stepOutcome = iota
	// stepStalled: the source cannot be resolved until its spec or Secret
	// changes (which wakes the credential up). The remaining steps still
	// count and report; none acts on the source.
	stepStalled
	// stepWaiting: the deletion waits for the namespace controller's
	// cleanup, whose writes wake the credential up. No further step runs;
	// the Ready condition says what it waits for.
	stepWaiting
	// stepDone: the credential is finalized; nothing is written.
	stepDone
)

// stepResult is a step's outcome and, when it wants the credential
// reconciled again at a time (the next probe), how soon.
type stepResult struct {
	outcome      stepOutcome
	requeueAfter time.Duration
}

var (
	continueSteps     = stepResult{outcome: stepContinue}
	stalledOnSource   = stepResult{outcome: stepStalled}
	waitingForCleanup = stepResult{outcome: stepWaiting}
	finalized         = stepResult{outcome: stepDone}
)

// runSteps runs steps until one fails, waits or is done, and merges their
// results: the gravest outcome, and the soonest requeue.
func runSteps(ctx context.Context, st *credentialState, steps []credentialStep) (stepResult, error) {
	var res stepResult
	for _, step := range steps {
		got, err := step(ctx, st)
		if err != nil {
			return res, err
		}
		res.outcome = max(res.outcome, got.outcome)
		if got.requeueAfter != 0 && (res.requeueAfter == 0 || got.requeueAfter < res.requeueAfter) {
			res.requeueAfter = got.requeueAfter
		}
		if res.outcome >= stepWaiting {
			break
		}
	}
	return res, nil
}

// summarizeAndPatch writes what the steps found: nothing for a finalized
// credential, the Ready condition of a deletion that waits, else the whole
// status and the metrics.
func (r *CredentialReconciler) summarizeAndPatch(ctx context.Context, st *credentialState, res stepResult) (ctrl.Result, error) {
	switch res.outcome {
	case stepDone:
		return ctrl.Result{}, nil
	case stepWaiting:
		return ctrl.Result{}, r.updateStatus(ctx, st.c, func(s *v1alpha1.CredentialStatus) {
			meta.SetStatusCondition(&s.Conditions, st.ready)
		})
	}
	err := r.updateStatus(ctx, st.c, st.writeStatus)
	// The metrics say what the controller found, written or not.
	st.recordMetrics()
	return ctrl.Result{RequeueAfter: res.requeueAfter}, err
}

// forget drops what the controller keeps about a deleted credential.
func (r *CredentialReconciler) forget(key credential.Key) {
	r.failures.forget(key)
	r.renders.forget(key)
	deleteCredentialMetrics(key)
}

func (r *CredentialReconciler) listCopies(_ context.Context, st *credentialState) (stepResult, error) {
	st.copies = r.copiesOf(st.c)
	return continueSteps, nil
}

// finalize lets a deleted credential go once the namespace controller has
// removed its copies and ServiceAccount entries; each removal wakes this
// controller up.
func (r *CredentialReconciler) finalize(ctx context.Context, st *credentialState) (stepResult, error) {
	c := st.c
	if !c.Deleting() {
		return continueSteps, nil
	}
	log := ctrl.LoggerFrom(ctx)
	// A copy already being deleted counts as removed: a finalizer someone
	// else put on it must not hold the credential forever.
	pending := 0
	for _, s := range st.copies {
		if s.DeletionTimestamp.IsZero() {
			pending++
		}
	}
	if pending > 0 {
		log.V(1).Info("waiting for cleanup", logkeys.Count, pending)
		st.ready = metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonDeleting,
			Message: fmt.Sprintf("removing the Secret from %d namespaces", pending), ObservedGeneration: c.Object.GetGeneration()}
		return waitingForCleanup, nil
	}
	if controllerutil.ContainsFinalizer(c.Object, credential.Finalizer) {
		patch := client.MergeFrom(c.Object.DeepCopyObject().(client.Object))
		controllerutil.RemoveFinalizer(c.Object, credential.Finalizer)
		if err := r.client.Patch(ctx, c.Object, patch); err != nil && !apierrors.IsNotFound(err) {
			return continueSteps, err
		}
		syncWrites.WithLabelValues("remove_finalizer").Inc()
		log.Info("cleanup done")
	}
	r.verifier.forget(c.Object.GetUID())
	r.forget(c.Key)
	return finalized, nil
}

func (r *CredentialReconciler) ensureFinalizer(ctx context.Context, st *credentialState) (stepResult, error) {
	if controllerutil.ContainsFinalizer(st.c.Object, credential.Finalizer) {
		return continueSteps, nil
	}
	patch := client.MergeFrom(st.c.Object.DeepCopyObject().(client.Object))
	controllerutil.AddFinalizer(st.c.Object, credential.Finalizer)
	if err := r.client.Patch(ctx, st.c.Object, patch); err != nil {
		return continueSteps, err
	}
	syncWrites.WithLabelValues("add_finalizer").Inc()
	return continueSteps, nil
}

func (r *CredentialReconciler) selectNamespaces(ctx context.Context, st *credentialState) (stepResult, error) {
	var err error
	st.desired, err = r.desiredNamespaces(ctx, st.c)
	return continueSteps, err
}

// resolveSource renders the source. A source that fails leaves the copies
// as they are, and stalls the credential until the source changes.
func (r *CredentialReconciler) resolveSource(ctx context.Context, st *credentialState) (stepResult, error) {
	st.src = r.renders.get(ctx, st.c)
	if st.src.Err != nil {
		return stalledOnSource, nil
	}
	return continueSteps, nil
}

// countCopies counts the up-to-date copies in desired namespaces (with a
// failing source, every copy there: it is left as it is) and the failed
// namespaces.
func (r *CredentialReconciler) countCopies(_ context.Context, st *credentialState) (stepResult, error) {
	if !st.c.DeliversSecrets() {
		// Copies left from before a switch to Node are on their way out.
		return continueSteps, nil
	}
	for _, s := range st.copies {
		if st.desired[s.Namespace] && (st.src.Err != nil || st.src.current(s.Data[corev1.DockerConfigJsonKey])) {
			st.synced++
		}
	}
	st.fails = r.failures.get(st.c.Key, func(ns string) bool { return st.desired[ns] })
	return continueSteps, nil
}

// buildReady sets the Ready condition: the source's error, then failed
// namespaces, then how many copies are synced.
func buildReady(_ context.Context, st *credentialState) (stepResult, error) {
	src, fails, desired := st.src, st.fails, len(st.desired)
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: st.c.Object.GetGeneration()}
	switch {
	case src.Err != nil:
		cond.Status, cond.Reason = metav1.ConditionFalse, string(src.Err.Reason)
		cond.Message = src.Err.Message + "; existing copies are left as they are"
	case len(fails) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha1.ReasonSyncFailed
		cond.Message = fmt.Sprintf("%d of %d namespaces failed; %s: %s", len(fails), desired, fails[0].Namespace, fails[0].Message)
	case desired == 0:
		cond.Status, cond.Reason = metav1.ConditionTrue, v1alpha1.ReasonNoNamespaces
		cond.Message = "no namespace is selected"
	case !st.c.DeliversSecrets():
		cond.Status, cond.Reason = metav1.ConditionTrue, v1alpha1.ReasonNodeDelivery
		cond.Message = fmt.Sprintf("served to kubelets by regcred's credential broker in %d namespaces, with no Secret copies", desired)
	case int(st.synced) < desired:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha1.ReasonProgressing
		cond.Message = fmt.Sprintf("Secret %s synced to %d of %d namespaces", st.c.SecretName(), st.synced, desired)
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, v1alpha1.ReasonSynced
		cond.Message = fmt.Sprintf("Secret %s synced to %d namespaces", st.c.SecretName(), st.synced)
	}
	if refresh := st.refreshErr(); refresh != nil {
		// The last good token still serves: say so, and why the next one
		// did not come.
		cond.Message += fmt.Sprintf("; refreshing the token failed (%s): %s; the token in the Secrets expires at %s",
			refresh.Reason, refresh.Message, src.Token.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if st.c.DeliversSecrets() && st.c.DeliversToNodes() && src.Err == nil && desired > 0 {
		cond.Message += "; also served to kubelets by regcred's credential broker"
	}
	// Source and token errors carry servers' text: one line, bounded.
	cond.Message = redact.Message(cond.Message)
	st.ready = cond
	return continueSteps, nil
}

// refreshErr is why the last refresh of a source's token failed while the
// token still serves; nil otherwise.
func (st *credentialState) refreshErr() *source.Error {
	if st.src.Err == nil && st.src.Token != nil {
		return st.src.Token.RefreshErr
	}
	return nil
}

// emitReadyEvents records an Event when the Ready condition changes status
// or reason (none for Progressing, a step of every rollout), and one when a
// token refresh failed, as often as the message changes.
func (r *CredentialReconciler) emitReadyEvents(ctx context.Context, st *credentialState) (stepResult, error) {
	cond := st.ready
	before := meta.FindStatusCondition(st.c.Status.Conditions, v1alpha1.ConditionReady)
	if before == nil || before.Status != cond.Status || before.Reason != cond.Reason {
		eventType := corev1.EventTypeNormal
		if cond.Status != metav1.ConditionTrue && cond.Reason != v1alpha1.ReasonProgressing {
			eventType = corev1.EventTypeWarning
		}
		if cond.Reason != v1alpha1.ReasonProgressing {
			r.recorder.Eventf(st.c.Object, nil, eventType, cond.Reason, "Reconcile", "%s", cond.Message)
		}
		ctrl.LoggerFrom(ctx).Info("ready condition changed", logkeys.Status, cond.Status, logkeys.Reason, cond.Reason)
	}
	if refresh := st.refreshErr(); refresh != nil && (before == nil || before.Message != cond.Message) {
		r.recorder.Eventf(st.c.Object, nil, corev1.EventTypeWarning, string(refresh.Reason), "RefreshToken",
			"refreshing the token failed: %s; the current token expires at %s", redact.Message(refresh.Message), st.src.Token.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return continueSteps, nil
}

// verify runs spec.verify's probe when one is due, records an Event when
// the Verified condition changes status or reason, and requeues for the
// next probe. A source that cannot be resolved is not probed.
func (r *CredentialReconciler) verify(ctx context.Context, st *credentialState) (stepResult, error) {
	c := st.c
	if c.Spec.Verify == nil || st.src.Err != nil {
		return continueSteps, nil
	}
	verified, verifyState, next := r.verifier.result(ctx, c, st.src.Data)
	st.verified, st.verifyState = verified, verifyState
	if cond := verified; cond != nil {
		if old := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionVerified); old == nil || old.Status != cond.Status || old.Reason != cond.Reason {
			eventType := corev1.EventTypeNormal
			if cond.Status != metav1.ConditionTrue {
				eventType = corev1.EventTypeWarning
			}
			r.recorder.Eventf(c.Object, nil, eventType, "Verify"+cond.Reason, "Verify", "%s", cond.Message)
			ctrl.LoggerFrom(ctx).Info("verified condition changed", logkeys.Status, cond.Status, logkeys.Reason, cond.Reason)
		}
	}
	return stepResult{outcome: stepContinue, requeueAfter: time.Until(next) + time.Second}, nil
}

// writeStatus is the status change of a reconcile that got through.
func (st *credentialState) writeStatus(s *v1alpha1.CredentialStatus) {
	c, src := st.c, st.src
	s.ObservedGeneration = c.Object.GetGeneration()
	switch {
	case c.Spec.Verify == nil:
		meta.RemoveStatusCondition(&s.Conditions, v1alpha1.ConditionVerified)
		s.Verify = nil
	case st.verified != nil:
		meta.SetStatusCondition(&s.Conditions, *st.verified)
		s.Verify = st.verifyState
	}
	meta.SetStatusCondition(&s.Conditions, st.ready)
	if st.injection != nil {
		meta.SetStatusCondition(&s.Conditions, *st.injection)
	} else {
		meta.RemoveStatusCondition(&s.Conditions, v1alpha1.ConditionPodInjection)
	}
	s.SecretName = c.SecretName()
	if !c.DeliversSecrets() {
		s.SecretName = ""
	}
	s.SourceVersion = src.Version
	switch {
	case src.Token != nil:
		s.Token = &v1alpha1.TokenStatus{ExpiresAt: timeOf(src.Token.ExpiresAt), RefreshedAt: timeOf(src.Token.RefreshedAt), NextRefreshAt: timeOf(src.Token.RefreshAt)}
	case src.Err == nil:
		s.Token = nil
	}
	desired := int32(len(st.desired))
	s.Namespaces = v1alpha1.NamespaceCounts{
		Desired: desired, Synced: st.synced, Failed: int32(len(st.fails)),
		Summary: fmt.Sprintf("%d/%d", st.synced, desired),
	}
	writeDelivery(c, s)
	s.Failures = nil
	for i, f := range st.fails {
		if i == maxFailuresInStatus {
			break
		}
		s.Failures = append(s.Failures, v1alpha1.NamespaceFailure{Namespace: f.Namespace, Message: redact.Message(f.Message)})
	}
}

// recordMetrics reports the Ready condition, the token's expiry, the
// namespace counts and the Verified condition (removed without
// spec.verify, kept when no probe ran).
func (st *credentialState) recordMetrics() {
	k := st.c.Key
	credentialReady.WithLabelValues(string(k.Kind), k.Namespace, k.Name).Set(boolGauge(st.ready.Status))
	if st.src.Token != nil {
		credentialExpiry.WithLabelValues(string(k.Kind), k.Namespace, k.Name).Set(float64(st.src.Token.ExpiresAt.Unix()))
	}
	credentialNamespaces.WithLabelValues(string(k.Kind), k.Namespace, k.Name, "desired").Set(float64(len(st.desired)))
	credentialNamespaces.WithLabelValues(string(k.Kind), k.Namespace, k.Name, "synced").Set(float64(st.synced))
	credentialNamespaces.WithLabelValues(string(k.Kind), k.Namespace, k.Name, "failed").Set(float64(len(st.fails)))
	switch {
	case st.c.Spec.Verify == nil:
		setVerifiedMetric(k, nil)
	case st.verified != nil:
		setVerifiedMetric(k, st.verified)
	}
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
func (r *CredentialReconciler) copiesOf(c *credential.Credential) []*corev1.Secret {
	var out []*corev1.Secret
	r.copies.each(c.Key, func(s *corev1.Secret) {
		if c.Owns(s) {
			out = append(out, s)
		}
	})
	return out
}

func (r *CredentialReconciler) desiredNamespaces(ctx context.Context, c *credential.Credential) (map[string]bool, error) {
	// The selector is parsed once, not once per namespace.
	scope, err := c.Scope(r.regcredNamespace)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	if c.Kind == credential.KindNamespaced {
		var ns corev1.Namespace
		if err := r.client.Get(ctx, client.ObjectKey{Name: c.Namespace}, &ns); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		if scope.Applies(&ns) {
			out[ns.Name] = true
		}
		return out, nil
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

// writeDelivery records spec.delivery in the status; the broker's
// replicas add up what they served there. A credential delivered as
// Secrets only has no delivery status.
func writeDelivery(c *credential.Credential, s *v1alpha1.CredentialStatus) {
	if !c.DeliversToNodes() {
		s.Delivery = nil
		return
	}
	if s.Delivery == nil {
		s.Delivery = &v1alpha1.DeliveryStatus{}
	}
	s.Delivery.Mode = c.Spec.Delivery
	if !c.DeliversSecrets() {
		s.Namespaces.Summary = fmt.Sprintf("node %d", s.Namespaces.Desired)
	}
}

// podInjection says, when admission policies inject Pods, whether they
// carry the credential: one with more registry keys than a policy carries
// for one credential is refused whole (never carried in part), and
// recorded with a Warning Event when the condition turns so.
func (r *CredentialReconciler) podInjection(_ context.Context, st *credentialState) (stepResult, error) {
	c := st.c
	if r.podPolicies == nil || !c.InjectionEnabled() || c.Deleting() {
		return continueSteps, nil
	}
	cond := metav1.Condition{Type: v1alpha1.ConditionPodInjection, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAdmissionPolicy,
		Message: "its Secret is added to matching Pods by the MutatingAdmissionPolicies regcred generates", ObservedGeneration: c.Object.GetGeneration()}
	if reason := r.podPolicies.Refusal(c.Key); reason != "" {
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonPolicyTooLarge
		cond.Message = "not carried by the admission policies, so Pods do not get its Secret: " + reason
		if old := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionPodInjection); old == nil || old.Status != cond.Status {
			r.recorder.Eventf(c.Object, nil, corev1.EventTypeWarning, ReasonPolicyTooLarge, "InjectPods", "%s", cond.Message)
		}
	}
	st.injection = &cond
	return continueSteps, nil
}
