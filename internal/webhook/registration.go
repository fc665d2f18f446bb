package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/logkeys"
)

// The MutatingWebhookConfiguration is read and written by name only (Get
// and Update through the API reader, no list or watch): the chart grants
// get and update on its configuration's name (templates/rbac.yaml), and
// create only to `regcred manager --webhook-register` installs, whose
// operators grant it themselves (create cannot be limited to a name).

// Configuration is the MutatingWebhookConfiguration regcred registers.
func (c Config) Configuration(caBundle []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	failure := c.FailurePolicy
	if failure == "" {
		failure = admissionregistrationv1.Ignore
	}
	timeout := c.TimeoutSeconds
	if timeout == 0 {
		timeout = 5
	}
	sideEffects := admissionregistrationv1.SideEffectClassNoneOnDryRun
	reinvoke := admissionregistrationv1.IfNeededReinvocationPolicy
	equivalent := admissionregistrationv1.Equivalent
	scope := admissionregistrationv1.NamespacedScope
	cc := c.ClientConfig
	cc.CABundle = caBundle
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: c.ConfigurationName, Labels: map[string]string{"app.kubernetes.io/managed-by": managedBy}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "pods.regcred.dev",
			ClientConfig:            cc,
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &sideEffects,
			FailurePolicy:           &failure,
			TimeoutSeconds:          &timeout,
			ReinvocationPolicy:      &reinvoke,
			MatchPolicy:             &equivalent,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: append(slices.Clone(credential.AlwaysExcluded), c.Namespace)},
				{Key: LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
			}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
			}},
		}},
	}
}

func (t *TLS) ensureConfiguration(ctx context.Context, caBundle []byte) error {
	want := t.Config.Configuration(caBundle)
	var cur admissionregistrationv1.MutatingWebhookConfiguration
	err := t.Reader.Get(ctx, client.ObjectKey{Name: want.Name}, &cur)
	if apierrors.IsNotFound(err) {
		if err := t.Writer.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create MutatingWebhookConfiguration: %w", err)
		}
		t.Log.Info("registered the webhook", logkeys.Configuration, want.Name)
		return nil
	}
	if err != nil {
		return err
	}
	if !t.Config.ManageCertificates && len(cur.Webhooks) == 1 {
		// cert-manager's CA injector owns the bundle.
		want.Webhooks[0].ClientConfig.CABundle = cur.Webhooks[0].ClientConfig.CABundle
		want.Annotations = cur.Annotations
	}
	if equality.Semantic.DeepEqual(cur.Webhooks, want.Webhooks) {
		return nil
	}
	updated := cur.DeepCopy()
	updated.Webhooks = want.Webhooks
	if err := t.Writer.Update(ctx, updated); err != nil {
		return fmt.Errorf("update MutatingWebhookConfiguration: %w", err)
	}
	t.Log.Info("updated the webhook configuration", logkeys.Configuration, want.Name)
	return nil
}

// ErrConfigurationMissing: the MutatingWebhookConfiguration whose caBundle
// regcred keeps does not exist (yet).
var ErrConfigurationMissing = errors.New("MutatingWebhookConfiguration not found")

// injectCABundle keeps the caBundle of every webhook of a configuration
// installed by someone else (the Helm chart, kustomize) equal to regcred's
// CA bundle, and touches nothing else of it.
func (t *TLS) injectCABundle(ctx context.Context, caBundle []byte) error {
	key := client.ObjectKey{Name: t.Config.ConfigurationName}
	for attempt := 0; attempt < 5; attempt++ {
		var cur admissionregistrationv1.MutatingWebhookConfiguration
		err := t.Reader.Get(ctx, key, &cur)
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%w: %q (install it with the Helm chart or config/default, or run with --webhook-register)", ErrConfigurationMissing, key.Name)
		}
		if err != nil {
			return err
		}
		updated := cur.DeepCopy()
		for i := range updated.Webhooks {
			updated.Webhooks[i].ClientConfig.CABundle = caBundle
		}
		if equality.Semantic.DeepEqual(cur.Webhooks, updated.Webhooks) {
			return nil
		}
		if err := t.Writer.Update(ctx, updated); err != nil {
			if apierrors.IsConflict(err) {
				continue
			}
			return fmt.Errorf("update the caBundle of MutatingWebhookConfiguration %q: %w", key.Name, err)
		}
		t.Log.Info("updated the webhook configuration's caBundle", logkeys.Configuration, key.Name)
		return nil
	}
	return fmt.Errorf("MutatingWebhookConfiguration %q keeps changing under us", key.Name)
}

// removeConfiguration deletes the MutatingWebhookConfiguration regcred
// registered (labelled managed-by regcred), once Pods are injected by
// admission policies: it would otherwise send every Pod to a webhook that
// no longer serves them. One installed by someone else stays.
func (t *TLS) removeConfiguration(ctx context.Context) error {
	var cur admissionregistrationv1.MutatingWebhookConfiguration
	err := t.Reader.Get(ctx, client.ObjectKey{Name: t.Config.ConfigurationName}, &cur)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.Labels["app.kubernetes.io/managed-by"] != managedBy {
		return nil
	}
	if err := t.Writer.Delete(ctx, &cur, client.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove MutatingWebhookConfiguration %q (Pods are injected by admission policies now): %w", cur.Name, err)
	}
	t.Log.Info("removed the webhook configuration: Pods are injected by admission policies", logkeys.Configuration, cur.Name)
	return nil
}
