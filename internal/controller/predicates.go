package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"regcred.dev/regcred/internal/credential"
)

func namespaceChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*corev1.Namespace), e.ObjectNew.(*corev1.Namespace)
			return !labels.Equals(o.Labels, n.Labels) || o.Status.Phase != n.Status.Phase ||
				o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero()
		},
	}
}

func serviceAccountChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*corev1.ServiceAccount), e.ObjectNew.(*corev1.ServiceAccount)
			if len(o.ImagePullSecrets) != len(n.ImagePullSecrets) || !labels.Equals(o.Labels, n.Labels) ||
				o.Annotations[credential.AnnotationPullSecrets] != n.Annotations[credential.AnnotationPullSecrets] {
				return true
			}
			for i := range o.ImagePullSecrets {
				if o.ImagePullSecrets[i] != n.ImagePullSecrets[i] {
					return true
				}
			}
			return false
		},
		DeleteFunc: func(event.DeleteEvent) bool { return false },
	}
}

// specOrLifecycleChanged ignores the credential controller's own status
// writes.
func specOrLifecycleChanged() predicate.Predicate {
	return predicate.Or(predicate.GenerationChangedPredicate{}, predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero() ||
				len(e.ObjectOld.GetFinalizers()) != len(e.ObjectNew.GetFinalizers())
		},
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	})
}
