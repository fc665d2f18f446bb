package controller

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/nodecreds"
)

// ErrNotApplicable means the credential does not act in the namespace.
var ErrNotApplicable = errors.New("credential does not apply to the namespace")

// EnsureSecret makes sure the managed Secret of a credential exists in
// namespace, creating it when missing. The admission webhook calls it with
// the credential it took from the same catalogue, before admitting a Pod
// that needs the Secret, so that the first Pod of a brand-new namespace
// never races the namespace controller. In the steady state the Secret is
// in the cache and no API call is made.
func (r *NamespaceReconciler) EnsureSecret(ctx context.Context, c *credential.Entry, namespace string) error {
	name := c.SecretName()
	var cur corev1.Secret
	err := r.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &cur)
	if err == nil && c.Owns(&cur) {
		return nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	var existing *corev1.Secret
	if err == nil {
		existing = &cur
	}
	var ns corev1.Namespace
	if err := r.client.Get(ctx, client.ObjectKey{Name: namespace}, &ns); err != nil {
		return err
	}
	if ok, err := c.Applies(&ns); err != nil || !ok {
		return ErrNotApplicable
	}
	if err := r.claims(c, &ns, existing); err != nil {
		return err
	}
	src := r.renders.get(ctx, c.Credential)
	if src.Err != nil {
		return src.Err
	}
	switch outcome, err := r.ensureSecret(ctx, c.Credential, &ns, name, src.Data, existing, FieldManagerWebhook); outcome {
	case secretReady:
		return nil
	case secretStalled:
		return fmt.Errorf("Secret %s/%s is not regcred's", namespace, name)
	case secretNamespaceGone:
		return fmt.Errorf("namespace %s is being deleted", namespace)
	default:
		return err
	}
}

// claims checks that c wins the claim on its Secret name in ns, in the
// namespace controller's order (claimOrder): the webhook must not create a
// Secret under a name the namespace controller gives to another
// credential, nor take one over.
func (r *NamespaceReconciler) claims(c *credential.Entry, ns *corev1.Namespace, cur *corev1.Secret) error {
	name := c.SecretName()
	rivals := []*credential.Entry{c}
	for _, o := range r.catalogue.Acting(ns) {
		if o.Key != c.Key && o.DeliversSecrets() && o.SecretName() == name {
			rivals = append(rivals, o)
		}
	}
	existing := map[string]*corev1.Secret{}
	if cur != nil {
		existing[name] = cur
	}
	claimOrder(rivals, existing)
	if w := rivals[0]; w.Key != c.Key {
		return fmt.Errorf("Secret name %q is also used by %s", name, w.Key.String())
	}
	return nil
}

// NodeCredential renders c for the kubelet credential broker: the same
// rendering as the Secrets (entries the credential covers, the token
// cache's current token), read once per source change, written nowhere.
func (r *NamespaceReconciler) NodeCredential(ctx context.Context, c *credential.Credential) (*nodecreds.Rendered, error) {
	src := r.renders.get(ctx, c)
	if src.Err != nil {
		return nil, src.Err
	}
	cfg, err := dockercfg.ParseDockerConfigJSON(src.Data)
	if err != nil {
		return nil, err
	}
	out := &nodecreds.Rendered{Config: cfg}
	if src.Token != nil {
		out.ExpiresAt = src.Token.ExpiresAt
	}
	return out, nil
}
