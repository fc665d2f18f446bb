package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/logkeys"
	"regcred.dev/regcred/internal/source"
)

// Field managers: who wrote a managed Secret shows in its managedFields.
const (
	FieldManagerController = "regcred-controller"
	FieldManagerWebhook    = "regcred-webhook"
)

// conflictRetry is how soon a namespace whose Secret name is taken by a
// Secret regcred does not own is looked at again: that Secret is not
// watched (only regcred's own are), so its removal sends no event.
const conflictRetry = time.Minute

// NamespaceReconciler makes one namespace's managed Secrets and
// ServiceAccount entries match the credentials that apply to it.
type NamespaceReconciler struct {
	client           client.Client
	apiReader        client.Reader
	regcredNamespace string
	sources          *sources
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
	sort.SliceStable(applicable, func(i, j int) bool {
		oi, oj := owns(existing, applicable[i]), owns(existing, applicable[j])
		if oi != oj {
			return oi
		}
		return applicable[i].Key.String() < applicable[j].Key.String()
	})

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
		src := r.sources.get(ctx, c)
		cur := existing[name]
		if src.Err != nil {
			// A bad source leaves existing copies exactly as they are; the
			// credential controller reports it.
			if cur != nil && ownerKey(cur) == c.Key.String() {
				ready[name] = c
			}
			r.failures.set(c.Key, ns.Name, "")
			if src.Err.Reason == source.Unavailable {
				errs = append(errs, src.Err)
			}
			continue
		}
		ok, retryAfter, err := r.ensureSecret(ctx, c, &ns, name, src.Data, cur, FieldManagerController)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if retryAfter > 0 && (requeue == 0 || retryAfter < requeue) {
			requeue = retryAfter
		}
		if ok {
			ready[name] = c
		}
	}

	// Remove managed Secrets no applicable credential claims. A claimed
	// name is kept whoever owns it now: ensureSecret took it over or
	// reported why it could not.
	for name, s := range existing {
		if _, claimed := claim[name]; claimed {
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

func owns(existing map[string]*corev1.Secret, c *credential.Credential) bool {
	s, ok := existing[c.SecretName()]
	return ok && ownerKey(s) == c.Key.String()
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
	if r.failures.set(c.Key, namespace, message) {
		ctrl.LoggerFrom(ctx).Info("sync failed", logkeys.Credential, c.Key.String(), logkeys.Reason, message)
		r.recorder.Eventf(c.Object, nil, corev1.EventTypeWarning, v1alpha1.ReasonSyncFailed, "Sync", "namespace %s: %s", namespace, message)
	}
}

func (r *NamespaceReconciler) desiredSecret(c *credential.Credential, namespace, name string, data []byte) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   namespace,
			Labels:      map[string]string{credential.LabelManaged: "true"},
			Annotations: map[string]string{credential.AnnotationCredential: c.Annotation()},
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
	gvk := v1alpha1.GroupVersion.WithKind(string(c.Kind))
	// An owner reference lets the garbage collector clean up where it runs;
	// regcred's own cleanup does not depend on it.
	s.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: c.Name, UID: c.Object.GetUID(),
	}}
	return s
}

// ensureSecret creates or repairs the managed Secret. ok says whether the
// Secret is now in place and regcred's.
func (r *NamespaceReconciler) ensureSecret(ctx context.Context, c *credential.Credential, ns *corev1.Namespace, name string, data []byte, cur *corev1.Secret, fieldManager string) (ok bool, retryAfter time.Duration, err error) {
	log := ctrl.LoggerFrom(ctx).WithValues(logkeys.Secret, name, logkeys.Credential, c.Key.String())
	want := r.desiredSecret(c, ns.Name, name, data)

	if cur == nil {
		err := r.client.Create(ctx, want, client.FieldOwner(fieldManager))
		switch {
		case err == nil:
			syncWrites.WithLabelValues("create_secret").Inc()
			log.V(1).Info("created Secret")
			r.failures.set(c.Key, ns.Name, "")
			return true, 0, nil
		case apierrors.IsAlreadyExists(err):
			// Not in the cache, so not labelled as regcred's, or the cache
			// is behind. Look at the real thing.
			var live corev1.Secret
			if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(want), &live); err != nil {
				return false, 0, err
			}
			if live.Annotations[credential.AnnotationCredential] != c.Annotation() {
				r.fail(ctx, c, ns.Name, fmt.Sprintf("Secret %s/%s exists and is not managed by regcred; it is left untouched: delete it or set another spec.secretName", ns.Name, name))
				return false, conflictRetry, nil
			}
			cur = &live // ours (the cache is behind, or the label was removed): repair it
		case apierrors.IsNotFound(err) || apierrors.IsForbidden(err) && ns.Status.Phase == corev1.NamespaceTerminating:
			return false, 0, nil
		default:
			syncErrors.WithLabelValues("create_secret").Inc()
			r.fail(ctx, c, ns.Name, fmt.Sprintf("create Secret %s: %v", name, apiReason(err)))
			return false, 0, err
		}
	}

	if cur.Type != want.Type {
		// The type of a Secret cannot change: replace it.
		if err := r.deleteSecret(ctx, cur); err != nil {
			return false, 0, err
		}
		return r.ensureSecret(ctx, c, ns, name, data, nil, fieldManager)
	}
	if secretUpToDate(cur, want) {
		r.failures.set(c.Key, ns.Name, "")
		return true, 0, nil
	}
	updated := cur.DeepCopy()
	updated.Data = want.Data
	if updated.Labels == nil {
		updated.Labels = map[string]string{}
	}
	maps.Copy(updated.Labels, want.Labels)
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	maps.Copy(updated.Annotations, want.Annotations)
	updated.OwnerReferences = want.OwnerReferences
	if err := r.client.Update(ctx, updated, client.FieldOwner(fieldManager)); err != nil {
		if apierrors.IsConflict(err) {
			return false, 0, err // requeued; the next read is fresh
		}
		syncErrors.WithLabelValues("update_secret").Inc()
		r.fail(ctx, c, ns.Name, fmt.Sprintf("update Secret %s: %v", name, apiReason(err)))
		return false, 0, err
	}
	syncWrites.WithLabelValues("update_secret").Inc()
	log.Info("updated Secret")
	r.failures.set(c.Key, ns.Name, "")
	return true, 0, nil
}

func secretUpToDate(cur, want *corev1.Secret) bool {
	if len(cur.Data) != 1 || !bytes.Equal(cur.Data[corev1.DockerConfigJsonKey], want.Data[corev1.DockerConfigJsonKey]) {
		return false
	}
	for k, v := range want.Labels {
		if cur.Labels[k] != v {
			return false
		}
	}
	for k, v := range want.Annotations {
		if cur.Annotations[k] != v {
			return false
		}
	}
	return slices.EqualFunc(cur.OwnerReferences, want.OwnerReferences, func(a, b metav1.OwnerReference) bool {
		return a.UID == b.UID && a.Kind == b.Kind && a.Name == b.Name && a.APIVersion == b.APIVersion
	})
}

func (r *NamespaceReconciler) deleteSecret(ctx context.Context, s *corev1.Secret) error {
	uid := s.UID
	err := r.client.Delete(ctx, s, client.Preconditions{UID: &uid})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		syncErrors.WithLabelValues("delete_secret").Inc()
		return err
	}
	if err == nil {
		syncWrites.WithLabelValues("delete_secret").Inc()
		ctrl.LoggerFrom(ctx).Info("deleted Secret", logkeys.Secret, s.Name, logkeys.Credential, ownerKey(s))
	}
	return nil
}

// syncServiceAccounts gives every ServiceAccount of the namespace the
// Secrets of the credentials that select it.
func (r *NamespaceReconciler) syncServiceAccounts(ctx context.Context, namespace string, ready map[string]*credential.Credential) error {
	var sas corev1.ServiceAccountList
	if err := r.client.List(ctx, &sas, client.InNamespace(namespace)); err != nil {
		return err
	}
	var errs []error
	for i := range sas.Items {
		sa := &sas.Items[i]
		want := map[string]bool{}
		for name, c := range ready {
			ok, err := c.SelectsServiceAccount(sa)
			if err != nil {
				r.fail(ctx, c, namespace, err.Error())
				continue
			}
			if ok {
				want[name] = true
			}
		}
		if err := r.patchServiceAccount(ctx, sa, func(cur *corev1.ServiceAccount) (*corev1.ServiceAccount, bool) {
			return applyPullSecrets(cur, want)
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeFromServiceAccounts drops the entries regcred added for one Secret.
func (r *NamespaceReconciler) removeFromServiceAccounts(ctx context.Context, namespace, secretName string) error {
	var sas corev1.ServiceAccountList
	if err := r.client.List(ctx, &sas, client.InNamespace(namespace)); err != nil {
		return err
	}
	var errs []error
	for i := range sas.Items {
		sa := &sas.Items[i]
		if !parseTracked(sa.Annotations[credential.AnnotationPullSecrets])[secretName] {
			continue
		}
		if err := r.patchServiceAccount(ctx, sa, func(cur *corev1.ServiceAccount) (*corev1.ServiceAccount, bool) {
			want := parseTracked(cur.Annotations[credential.AnnotationPullSecrets])
			delete(want, secretName)
			return applyPullSecrets(cur, want)
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// patchServiceAccount applies change with an optimistic lock; on a
// conflict (someone else edited the ServiceAccount) it reads it fresh and
// tries again.
func (r *NamespaceReconciler) patchServiceAccount(ctx context.Context, sa *corev1.ServiceAccount, change func(*corev1.ServiceAccount) (*corev1.ServiceAccount, bool)) error {
	cur := sa
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		updated, changed := change(cur)
		if !changed {
			return nil
		}
		err := r.client.Patch(ctx, updated, client.MergeFromWithOptions(cur, client.MergeFromWithOptimisticLock{}))
		if apierrors.IsConflict(err) {
			fresh := &corev1.ServiceAccount{}
			if gerr := r.apiReader.Get(ctx, types.NamespacedName{Namespace: sa.Namespace, Name: sa.Name}, fresh); gerr != nil {
				return gerr
			}
			cur = fresh
			return err
		}
		if err == nil {
			syncWrites.WithLabelValues("patch_serviceaccount").Inc()
			ctrl.LoggerFrom(ctx).V(1).Info("patched ServiceAccount", logkeys.ServiceAccount, sa.Name,
				"imagePullSecrets", len(updated.ImagePullSecrets))
		}
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		syncErrors.WithLabelValues("patch_serviceaccount").Inc()
	}
	return err
}

// apiReason shortens an API error to its status message.
func apiReason(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Message
	}
	return err.Error()
}

// ErrNotApplicable means the credential does not act in the namespace.
var ErrNotApplicable = errors.New("credential does not apply to the namespace")

// EnsureSecret makes sure the managed Secret of a credential exists in
// namespace, creating it when missing. The admission webhook calls it with
// the credential it compiled from the same cache, before admitting a Pod
// that needs the Secret, so that the first Pod of a brand-new namespace
// never races the namespace controller. In the steady state the Secret is
// in the cache and no API call is made.
func (r *NamespaceReconciler) EnsureSecret(ctx context.Context, c *credential.Credential, namespace string) error {
	name := c.SecretName()
	var cur corev1.Secret
	err := r.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &cur)
	if err == nil && ownerKey(&cur) == c.Key.String() {
		return nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	var ns corev1.Namespace
	if err := r.client.Get(ctx, client.ObjectKey{Name: namespace}, &ns); err != nil {
		return err
	}
	if ok, err := c.AppliesTo(&ns, r.regcredNamespace); err != nil || !ok {
		return ErrNotApplicable
	}
	src := r.sources.get(ctx, c)
	if src.Err != nil {
		return src.Err
	}
	var existing *corev1.Secret
	if err == nil {
		existing = &cur
	}
	ok, _, err := r.ensureSecret(ctx, c, &ns, name, src.Data, existing, FieldManagerWebhook)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("Secret %s/%s is not regcred's", namespace, name)
	}
	return nil
}
