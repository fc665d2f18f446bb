package controller

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/logkeys"
)

// syncServiceAccounts gives every ServiceAccount of the namespace the
// Secrets of the credentials that select it.
func (r *NamespaceReconciler) syncServiceAccounts(ctx context.Context, namespace string, ready map[string]*credential.Entry) error {
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
				r.fail(ctx, c.Credential, namespace, err.Error())
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
