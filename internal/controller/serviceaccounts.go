package controller

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"regcred.dev/regcred/internal/credential"
)

// applyPullSecrets computes a ServiceAccount's imagePullSecrets and
// tracking annotation so that it lists every name in want, and no name
// regcred added earlier that is no longer wanted. Entries that others put
// there are kept in place and never tracked, so cleanup never removes them.
// It returns the updated copy and whether anything changed.
func applyPullSecrets(sa *corev1.ServiceAccount, want map[string]bool) (*corev1.ServiceAccount, bool) {
	tracked := parseTracked(sa.Annotations[credential.AnnotationPullSecrets])
	present := map[string]bool{}
	for _, ref := range sa.ImagePullSecrets {
		present[ref.Name] = true
	}

	var kept []corev1.LocalObjectReference
	newTracked := map[string]bool{}
	for _, ref := range sa.ImagePullSecrets {
		if tracked[ref.Name] && !want[ref.Name] {
			continue // ours, no longer wanted
		}
		if tracked[ref.Name] {
			if newTracked[ref.Name] {
				continue // a duplicate of ours
			}
			newTracked[ref.Name] = true
		}
		kept = append(kept, ref)
	}
	var add []string
	for name := range want {
		if !present[name] {
			add = append(add, name)
		}
	}
	slices.Sort(add)
	for _, name := range add {
		kept = append(kept, corev1.LocalObjectReference{Name: name})
		newTracked[name] = true
	}

	newAnnotation := formatTracked(newTracked)
	if slices.Equal(kept, sa.ImagePullSecrets) && newAnnotation == sa.Annotations[credential.AnnotationPullSecrets] {
		return sa, false
	}
	out := sa.DeepCopy()
	out.ImagePullSecrets = kept
	if newAnnotation == "" {
		delete(out.Annotations, credential.AnnotationPullSecrets)
	} else {
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		out.Annotations[credential.AnnotationPullSecrets] = newAnnotation
	}
	return out, true
}

func parseTracked(v string) map[string]bool {
	out := map[string]bool{}
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out[n] = true
		}
	}
	return out
}

func formatTracked(m map[string]bool) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}
