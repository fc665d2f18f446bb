package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
)

// Tenants write ServiceAccounts, Namespaces' annotations and Secrets that
// carry regcred's label (anyone may set it), and every replica caches all
// of them: a namespace admin's 100 MiB of annotations would otherwise live
// in every manager's memory. The transforms below keep only what regcred
// reads. Writes never start from a trimmed copy's missing fields: the
// ServiceAccount patch is a merge patch of the fields regcred changes, and
// a Secret is read fresh from the API server before it is updated.

// cachedAnnotations are the annotations regcred reads from its cache, and
// maxCachedAnnotation bounds each value: regcred's own are a few KiB at
// most, and a tenant who pads one only loses it from regcred's view (the
// prefix alone would let regcred.dev/pad-N carry 256 KiB per object).
// (regcred.dev/token-audiences is not among them: the opt-in is read past
// the cache, right before a token is minted.)
var cachedAnnotations = []string{credential.AnnotationCredential, credential.AnnotationPullSecrets}

const maxCachedAnnotation = 16 << 10

// maxCachedSecretData is the largest .dockerconfigjson a cached managed
// Secret keeps whole. A rendered docker config is a few KiB; a larger one
// (64 registries of ECR tokens) is kept as its digest, which sameData
// compares. A Secret with any other key keeps no data in the cache, so it
// looks out of date and is read fresh before anything is written to it.
const maxCachedSecretData = 64 << 10

// cachedDigestPrefix marks a .dockerconfigjson the cache holds as its
// digest. It is never valid JSON, so nothing mistakes it for a config.
const cachedDigestPrefix = "\x00sha256:"

func dataDigest(b []byte) []byte {
	sum := sha256.Sum256(b)
	return []byte(cachedDigestPrefix + hex.EncodeToString(sum[:]))
}

// sameData reports whether a cached .dockerconfigjson, whole or as its
// digest, is want.
func sameData(cached, want []byte) bool {
	if len(want) > maxCachedSecretData && bytes.HasPrefix(cached, []byte(cachedDigestPrefix)) {
		return bytes.Equal(cached, dataDigest(want))
	}
	return bytes.Equal(cached, want)
}

// freshSecret reads cur past the cache before it is written: the cached
// copy lacks the annotations and data regcred does not read, and an
// update from it would drop them. A Secret changed since cur was judged
// (the cache is behind) is an error, retried once the cache caught up.
func (r *NamespaceReconciler) freshSecret(ctx context.Context, cur *corev1.Secret) (*corev1.Secret, error) {
	live := &corev1.Secret{}
	if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(cur), live); err != nil {
		return nil, err
	}
	if live.UID != cur.UID || live.ResourceVersion != cur.ResourceVersion {
		return nil, fmt.Errorf("Secret %s/%s changed since it was read; looking again", cur.Namespace, cur.Name)
	}
	return live, nil
}

// trimmed composes the managedFields strip with a kind's trim (a
// ByObject transform replaces the default one).
func trimmed(trim func(any)) toolscache.TransformFunc {
	return func(in any) (any, error) {
		trim(in)
		if a, ok := in.(metav1.Object); ok {
			a.SetManagedFields(nil)
		}
		return in, nil
	}
}

// trimMeta keeps the identity, lifecycle, labels, owner references and
// regcred's own annotations.
func trimMeta(m *metav1.ObjectMeta) {
	*m = metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Generation: m.Generation, CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp, DeletionGracePeriodSeconds: m.DeletionGracePeriodSeconds,
		Labels: m.Labels, Annotations: regcredAnnotations(m.Annotations),
		OwnerReferences: internOwners(m.OwnerReferences), Finalizers: m.Finalizers,
	}
}

func regcredAnnotations(in map[string]string) map[string]string {
	var out map[string]string
	for _, k := range cachedAnnotations {
		if v, ok := in[k]; ok && len(v) <= maxCachedAnnotation {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return internStrings(out)
}

// trimServiceAccount keeps the metadata above and imagePullSecrets.
func trimServiceAccount(in any) {
	sa, ok := in.(*corev1.ServiceAccount)
	if !ok {
		return
	}
	trimMeta(&sa.ObjectMeta)
	sa.Secrets = nil
	sa.AutomountServiceAccountToken = nil
}

// trimSecret keeps the metadata above, the type, and the data only when it
// is one small .dockerconfigjson: what secretUpToDate compares.
func trimSecret(in any) {
	s, ok := in.(*corev1.Secret)
	if !ok {
		return
	}
	trimMeta(&s.ObjectMeta)
	// Only regcred's own label is read; the others are a tenant's to pad.
	if v, ok := s.Labels[credential.LabelManaged]; ok {
		s.Labels = internStrings(map[string]string{credential.LabelManaged: v})
	} else {
		s.Labels = nil
	}
	s.StringData = nil
	s.Immutable = nil
	d, ok := s.Data[corev1.DockerConfigJsonKey]
	switch {
	case !ok || len(s.Data) != 1:
		s.Data = nil
	case len(d) > maxCachedSecretData:
		s.Data = internData(corev1.DockerConfigJsonKey, dataDigest(d))
	default:
		s.Data = internData(corev1.DockerConfigJsonKey, d)
	}
}

// trimRegistryCredential keeps what a tenant's credential says (its spec
// is bounded by validation) and regcred's status, but not the annotations
// (kubectl's last-applied copy, or padding).
func trimRegistryCredential(in any) {
	c, ok := in.(*v1alpha1.RegistryCredential)
	if !ok {
		return
	}
	c.Annotations = regcredAnnotations(c.Annotations)
}

// trimNamespace keeps the metadata above (labels are what selectors
// match) and the phase.
func trimNamespace(in any) {
	ns, ok := in.(*corev1.Namespace)
	if !ok {
		return
	}
	trimMeta(&ns.ObjectMeta)
	ns.Spec = corev1.NamespaceSpec{}
	ns.Status.Conditions = nil
}
