package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/logkeys"
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

// secretOutcome is what ensureSecret left in place. Errors are transient:
// the request is retried with backoff. A stalled outcome waits for a
// person (or conflictRetry) instead.
type secretOutcome int

const (
	// secretReady: the Secret is in place and regcred's.
	secretReady secretOutcome = iota
	// secretStalled: a Secret regcred does not own holds the name; it is
	// left untouched and reported.
	secretStalled
	// secretNamespaceGone: the namespace is going away; nothing to do.
	secretNamespaceGone
	// secretFailed: a transient error, returned with it.
	secretFailed
)

// ensureSecret creates or repairs the managed Secret. A Secret that is
// not fully the credential's (see credential.Credential.Owns) is never
// updated, replaced or deleted: it is left as it is and reported.
func (r *NamespaceReconciler) ensureSecret(ctx context.Context, c *credential.Credential, ns *corev1.Namespace, name string, data []byte, cur *corev1.Secret, fieldManager string) (secretOutcome, error) {
	want := r.desiredSecret(c, ns.Name, name, data)
	if cur == nil {
		outcome, live, err := r.createSecret(ctx, c, ns, want, fieldManager)
		if live == nil {
			return outcome, err
		}
		cur = live // the cache is behind: look at the real thing
	}
	if !c.Owns(cur) {
		r.reportForeign(ctx, c, ns.Name, name)
		return secretStalled, nil
	}
	if !cur.DeletionTimestamp.IsZero() {
		// Being deleted, and a finalizer holds it: its removal wakes the
		// namespace up, and the Secret is made again then.
		r.fail(ctx, c, ns.Name, fmt.Sprintf("Secret %s/%s is being deleted and held by a finalizer; it is made again once it is gone", ns.Name, name))
		return secretStalled, nil
	}
	if cur.Type != want.Type {
		// The type of a Secret cannot change: replace it. The next round
		// creates it, so a Secret that keeps coming back cannot loop here.
		if err := r.deleteSecret(ctx, cur); err != nil {
			return secretFailed, err
		}
		outcome, live, err := r.createSecret(ctx, c, ns, want, fieldManager)
		if live != nil {
			return secretFailed, fmt.Errorf("Secret %s/%s is still being replaced", ns.Name, name)
		}
		return outcome, err
	}
	if secretUpToDate(cur, want) {
		r.failures.set(c.Key, ns.Name, "")
		return secretReady, nil
	}
	return r.updateSecret(ctx, c, ns.Name, cur, want, fieldManager)
}

// reportForeign records that a Secret the credential does not own holds
// its name.
func (r *NamespaceReconciler) reportForeign(ctx context.Context, c *credential.Credential, namespace, name string) {
	r.fail(ctx, c, namespace, fmt.Sprintf("Secret %s/%s exists and is not managed by regcred for this credential; it is left untouched: delete it or set another spec.secretName", namespace, name))
}

// createSecret creates want. When a Secret of that name already exists it
// returns the live one (read past the cache) for the caller to judge.
func (r *NamespaceReconciler) createSecret(ctx context.Context, c *credential.Credential, ns *corev1.Namespace, want *corev1.Secret, fieldManager string) (secretOutcome, *corev1.Secret, error) {
	err := r.client.Create(ctx, want, client.FieldOwner(fieldManager))
	switch {
	case err == nil:
		syncWrites.WithLabelValues("create_secret").Inc()
		ctrl.LoggerFrom(ctx).V(1).Info("created Secret", logkeys.Secret, want.Name, logkeys.Credential, c.Key.String())
		r.failures.set(c.Key, ns.Name, "")
		return secretReady, nil, nil
	case apierrors.IsAlreadyExists(err):
		// Not in the cache (not labelled, so not regcred's), or the cache
		// is behind.
		var live corev1.Secret
		if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(want), &live); err != nil {
			return secretFailed, nil, err
		}
		return secretFailed, &live, nil
	case apierrors.IsNotFound(err) || apierrors.IsForbidden(err) && ns.Status.Phase == corev1.NamespaceTerminating:
		return secretNamespaceGone, nil, nil
	default:
		syncErrors.WithLabelValues("create_secret").Inc()
		r.fail(ctx, c, ns.Name, fmt.Sprintf("create Secret %s: %v", want.Name, apiReason(err)))
		return secretFailed, nil, err
	}
}

// updateSecret writes want's data and metadata over cur, a Secret the
// credential owns. The write carries cur's resourceVersion, so a Secret
// changed since it was judged is not overwritten.
func (r *NamespaceReconciler) updateSecret(ctx context.Context, c *credential.Credential, namespace string, cur, want *corev1.Secret, fieldManager string) (secretOutcome, error) {
	live, err := r.freshSecret(ctx, cur) // the cached copy is trimmed (cachetrim.go)
	if err != nil {
		return secretFailed, err
	}
	if secretUpToDate(live, want) {
		r.failures.set(c.Key, namespace, "")
		return secretReady, nil
	}
	updated := live.DeepCopy()
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
			return secretFailed, err // requeued; the next read is fresh
		}
		syncErrors.WithLabelValues("update_secret").Inc()
		r.fail(ctx, c, namespace, fmt.Sprintf("update Secret %s: %v", want.Name, apiReason(err)))
		return secretFailed, err
	}
	syncWrites.WithLabelValues("update_secret").Inc()
	ctrl.LoggerFrom(ctx).Info("updated Secret", logkeys.Secret, want.Name, logkeys.Credential, c.Key.String())
	r.failures.set(c.Key, namespace, "")
	return secretReady, nil
}

func secretUpToDate(cur, want *corev1.Secret) bool {
	if len(cur.Data) != 1 || !sameData(cur.Data[corev1.DockerConfigJsonKey], want.Data[corev1.DockerConfigJsonKey]) {
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

// deleteSecret deletes s, a Secret regcred owns, only as it was judged:
// the preconditions make a Secret replaced or changed since (its owner
// reference removed, say) a conflict, which is left alone.
func (r *NamespaceReconciler) deleteSecret(ctx context.Context, s *corev1.Secret) error {
	uid, rv := s.UID, s.ResourceVersion
	err := r.client.Delete(ctx, s, client.Preconditions{UID: &uid, ResourceVersion: &rv})
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
