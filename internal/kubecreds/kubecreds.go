// Package kubecreds reads pull credentials from the API server the way the
// kubelet finds them for a Pod: its imagePullSecrets, in order, each looked
// up in the Pod's namespace. Load turns them into the kubelet's ordered view
// of the candidates (a Set), which the CLI's resolve, check and mirror share.
package kubecreds

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/keyring"
)

// PodSecrets is what the kubelet will read for a Pod's pulls.
type PodSecrets struct {
	Pod            *corev1.Pod
	ServiceAccount string
	// FromServiceAccount is true when the Pod's imagePullSecrets are those
	// of its ServiceAccount: the ServiceAccount admission plugin copies them
	// into Pods that list none when they are created.
	FromServiceAccount bool
	// Secrets are the referenced Secrets that exist, in imagePullSecrets
	// order.
	Secrets []keyring.PullSecret
	// Missing are referenced Secrets that do not exist; the kubelet skips
	// them.
	Missing []string
	// Notes explain what a person may not expect.
	Notes []string
}

// ForPod fetches the Pod, its ServiceAccount and the Secrets it references.
func ForPod(ctx context.Context, cs kubernetes.Interface, namespace, name string) (*PodSecrets, error) {
	pod, err := cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
	}
	out := &PodSecrets{Pod: pod, ServiceAccount: pod.Spec.ServiceAccountName}
	if out.ServiceAccount == "" {
		out.ServiceAccount = "default"
	}

	var names []string
	for _, ref := range pod.Spec.ImagePullSecrets {
		if ref.Name != "" {
			names = append(names, ref.Name)
		}
	}

	sa, err := cs.CoreV1().ServiceAccounts(namespace).Get(ctx, out.ServiceAccount, metav1.GetOptions{})
	out.compareServiceAccount(namespace, names, sa, err)

	for _, n := range names {
		s, err := GetSecret(ctx, cs, namespace, n)
		if apierrors.IsNotFound(err) {
			out.Missing = append(out.Missing, namespace+"/"+n)
			continue
		}
		if err != nil {
			return nil, err
		}
		out.Secrets = append(out.Secrets, s)
	}
	return out, nil
}

// compareServiceAccount notes how the Pod's imagePullSecrets (names) relate
// to those of its ServiceAccount, read with err.
func (out *PodSecrets) compareServiceAccount(namespace string, names []string, sa *corev1.ServiceAccount, err error) {
	switch {
	case apierrors.IsNotFound(err):
		out.Notes = append(out.Notes, fmt.Sprintf("ServiceAccount %s/%s does not exist", namespace, out.ServiceAccount))
	case err != nil:
		out.Notes = append(out.Notes, fmt.Sprintf("could not read ServiceAccount %s/%s: %v", namespace, out.ServiceAccount, err))
	default:
		var saNames []string
		for _, ref := range sa.ImagePullSecrets {
			if ref.Name != "" {
				saNames = append(saNames, ref.Name)
			}
		}
		switch {
		case len(names) > 0 && slices.Equal(names, saNames):
			out.FromServiceAccount = true
		case len(names) == 0 && len(saNames) > 0:
			out.Notes = append(out.Notes, fmt.Sprintf("ServiceAccount %s lists imagePullSecrets %v, but the Pod has none: they are copied into a Pod only when it is created; recreate the Pod", out.ServiceAccount, saNames))
		case len(names) > 0 && len(saNames) > 0:
			var notInPod []string
			for _, n := range saNames {
				if !slices.Contains(names, n) {
					notInPod = append(notInPod, n)
				}
			}
			if len(notInPod) > 0 {
				out.Notes = append(out.Notes, fmt.Sprintf("ServiceAccount %s also lists %v, which the Pod does not use: a Pod that sets its own imagePullSecrets gets none of its ServiceAccount's", out.ServiceAccount, notInPod))
			}
		}
	}
}

// GetSecret reads one Secret as a pull secret.
func GetSecret(ctx context.Context, cs kubernetes.Interface, namespace, name string) (keyring.PullSecret, error) {
	s, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return keyring.PullSecret{}, err
		}
		return keyring.PullSecret{}, fmt.Errorf("get secret %s/%s: %w", namespace, name, err)
	}
	return keyring.PullSecret{Namespace: s.Namespace, Name: s.Name, Type: string(s.Type), Data: s.Data}, nil
}

// Images lists the images the kubelet pulls for a Pod (see
// credential.PodImages), each once, in its order.
func Images(pod *corev1.Pod) []string {
	var out []string
	for _, img := range credential.PodImages(&pod.Spec) {
		if img.Ref != "" && !slices.Contains(out, img.Ref) {
			out = append(out, img.Ref)
		}
	}
	return out
}
