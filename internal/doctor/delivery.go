package doctor

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"regcred.dev/regcred/internal/credential"
)

// deliveryRules explain, in order, why the Secret of a credential that
// covers the image (evidence.cred, one delivered as Secrets: Secrets or
// Both; node.go explains a Node one) is not in the Pod, or not usable there:
// where the credential acts, then its Secret in the namespace, then what
// puts the Secret into Pods (the ServiceAccount, the webhook). The last
// rule always concludes.
var deliveryRules = []rule{
	{"namespace-always-excluded", (*evidence).namespaceAlwaysExcluded},
	{"namespace-excluded", (*evidence).namespaceExcluded},
	{"namespace-not-selected", (*evidence).namespaceNotSelected},
	{"credential-not-ready", (*evidence).credentialNotReady},
	{"secret-not-synced", (*evidence).secretNotSynced},
	{"secret-foreign", (*evidence).secretForeign},
	{"pod-predates-secret", (*evidence).podPredatesSecret},
	{"service-account-patched-later", (*evidence).serviceAccountPatchedLater},
	{"injection-disabled", (*evidence).injectionDisabled},
	{"injection-opted-out", (*evidence).injectionOptedOut},
	{"webhook-not-registered", (*evidence).webhookNotRegistered},
	{"pod-predates-credential", (*evidence).podPredatesCredential},
	{"webhook-not-called", (*evidence).webhookNotCalled},
}

// clusterWide reports whether the credential asked about is a
// ClusterRegistryCredential, which picks its namespaces.
func (e *evidence) clusterWide() bool { return e.cred.c.Kind == credential.KindCluster }

func (e *evidence) namespaceAlwaysExcluded() bool {
	ns := e.pc.pod.Namespace
	if !e.clusterWide() || !(ns == e.pc.s.RegcredNamespace || slices.Contains(credential.AlwaysExcluded, ns)) {
		return false
	}
	e.out.conclude(DiagNamespaceExcluded, fmt.Sprintf("%s covers this image but never reaches namespace %s (regcred leaves it alone)%s", display(e.cred.c), ns, e.nodeSuffix()),
		fmt.Sprintf("kubectl -n %s create -f registrycredential.yaml  # a RegistryCredential of %s's own, with registries [%s]", ns, ns, registryHost(e.out.Image)))
	return true
}

func (e *evidence) namespaceExcluded() bool {
	ns := e.pc.pod.Namespace
	if !e.clusterWide() || !slices.Contains(e.cred.c.Exclude, ns) {
		return false
	}
	e.out.conclude(DiagNamespaceExcluded, fmt.Sprintf("%s covers this image but lists %s in spec.excludeNamespaces%s", display(e.cred.c), ns, e.nodeSuffix()),
		fmt.Sprintf("kubectl edit %s  # remove %s from spec.excludeNamespaces", objectRef(e.cred.c), ns))
	return true
}

func (e *evidence) namespaceNotSelected() bool {
	pc, v := e.pc, e.cred
	if !e.clusterWide() || pc.ns == nil {
		return false
	}
	if ok, err := v.entry.Applies(pc.ns); err != nil || ok {
		return false
	}
	expl := fmt.Sprintf("%s covers this image but its namespaceSelector does not pick namespace %s%s", display(v.c), pc.pod.Namespace, e.nodeSuffix())
	if q := e.refusalNaming("namespace " + pc.pod.Namespace + " "); q != "" && nodeOnly(v.c) {
		expl += fmt.Sprintf("; the broker's last refusal: %q", q)
	}
	e.out.conclude(DiagNamespaceNotSelected, expl, labelFix(v.c, pc.pod.Namespace, e.afterFix()))
	return true
}

func (e *evidence) credentialNotReady() bool {
	v := e.cred
	if v.state.Ready != "False" || e.pc.secretExists(v.secret) {
		return false
	}
	e.out.conclude(DiagSourceInvalid, fmt.Sprintf("%s covers this image but is not Ready (%s), so its Secret %s is not in %s", display(v.c), v.state.Reason, v.secret, e.pc.pod.Namespace),
		fmt.Sprintf("kubectl describe %s", objectRef(v.c)))
	return true
}

// credentialSecret is the credential's Secret in the Pod's namespace; ok
// is false when the caller may not read Secrets.
func (e *evidence) credentialSecret() (sec *corev1.Secret, found, ok bool) {
	if !e.pc.s.SecretsReadable {
		return nil, false, false
	}
	sec, found = e.pc.s.Secrets[e.pc.pod.Namespace+"/"+e.cred.secret]
	return sec, found, true
}

func (e *evidence) secretNotSynced() bool {
	v := e.cred
	if _, found, ok := e.credentialSecret(); !ok || found {
		return false
	}
	e.out.conclude(DiagSecretMissing, fmt.Sprintf("%s covers this image but its Secret %s is not in %s", display(v.c), v.secret, e.pc.pod.Namespace),
		fmt.Sprintf("kubectl get %s -o jsonpath='{.status.failures}'  # why regcred could not write it", objectRef(v.c)))
	if v.inPod {
		e.out.Explanation += "; the Pod lists it and the kubelet skipped it"
	}
	return true
}

func (e *evidence) secretForeign() bool {
	v, ns := e.cred, e.pc.pod.Namespace
	sec, found, ok := e.credentialSecret()
	if !ok || !found {
		return false
	}
	if owner, ok := credential.OwnerOf(sec); ok && owner == v.c.Key {
		return false
	}
	e.out.conclude(DiagSecretForeign, fmt.Sprintf("%s covers this image but Secret %s/%s belongs to someone else, and regcred never overwrites it", display(v.c), ns, v.secret),
		fmt.Sprintf("kubectl -n %s delete secret %s  # if nobody needs it; regcred then writes its own (or set spec.secretName)", ns, v.secret))
	return true
}

// podPredatesSecret: creation times have a resolution of one second:
// within the same second neither is before the other, and the
// ServiceAccount rule after it decides.
func (e *evidence) podPredatesSecret() bool {
	v, pod := e.cred, e.pc.pod
	sec, found, ok := e.credentialSecret()
	if !ok || !found || !pod.CreationTimestamp.Before(&sec.CreationTimestamp) {
		return false
	}
	why := fmt.Sprintf("%s covers this image, but the Pod was created before its Secret %s reached %s", display(v.c), v.secret, pod.Namespace)
	if pod.CreationTimestamp.Time.Before(v.c.Object.GetCreationTimestamp().Time) {
		why = fmt.Sprintf("%s covers this image, but the Pod was created before the credential", display(v.c))
	}
	e.out.conclude(DiagPodPredatesCredential, why+"; the kubelet never re-reads a Pod's pull secrets: recreate it", e.recreate)
	return true
}

func (e *evidence) serviceAccountPatchedLater() bool {
	pc, v := e.pc, e.cred
	if pc.sa == nil || !slices.ContainsFunc(pc.sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == v.secret }) || len(pc.pod.Spec.ImagePullSecrets) != 0 {
		return false
	}
	e.out.conclude(DiagServiceAccountLater, fmt.Sprintf("ServiceAccount %s lists %s now, but did not when the Pod was made; a Pod gets its ServiceAccount's pull secrets only at creation", pc.saName, v.secret), e.recreate)
	return true
}

func (e *evidence) injectionDisabled() bool {
	v := e.cred
	if v.c.InjectionEnabled() {
		return false
	}
	e.out.conclude(DiagInjectionDisabled, fmt.Sprintf("%s covers this image but has podInjection disabled, and ServiceAccount %s does not list %s", display(v.c), e.pc.saName, v.secret),
		fmt.Sprintf("kubectl patch %s --type merge -p '{\"spec\":{\"podInjection\":{\"enabled\":true}}}' && %s", objectRef(v.c), e.recreate))
	return true
}

func (e *evidence) injectionOptedOut() bool {
	pod, nsObj, ns := e.pc.pod, e.pc.ns, e.pc.pod.Namespace
	nsOptsOut := nsObj != nil && nsObj.Labels[credential.LabelInject] == "false"
	if pod.Labels[credential.LabelInject] != "false" && !nsOptsOut {
		return false
	}
	where := "the Pod"
	fix := fmt.Sprintf("kubectl -n %s label pod %s %s-  # then recreate it: %s", ns, pod.Name, credential.LabelInject, e.recreate)
	if nsOptsOut {
		where = "namespace " + ns
		fix = fmt.Sprintf("kubectl label namespace %s %s- && %s", ns, credential.LabelInject, e.recreate)
	}
	e.out.conclude(DiagInjectionOptedOut, fmt.Sprintf("%s covers this image but %s opts out of injection (%s=false)", display(e.cred.c), where, credential.LabelInject), fix)
	return true
}

func (e *evidence) webhookNotRegistered() bool {
	if e.pc.s.Webhook != nil {
		return false
	}
	e.out.conclude(DiagWebhookNotRegistered, fmt.Sprintf("%s covers this image but regcred's Pod webhook is not registered, so nothing added %s to the Pod", display(e.cred.c), e.cred.secret),
		fmt.Sprintf("helm upgrade regcred regcred/regcred -n %s --reuse-values --set webhook.enabled=true  # then: %s", e.pc.s.RegcredNamespace, e.recreate))
	return true
}

func (e *evidence) podPredatesCredential() bool {
	if !e.pc.pod.CreationTimestamp.Time.Before(e.cred.c.Object.GetCreationTimestamp().Time) {
		return false
	}
	e.out.conclude(DiagPodPredatesCredential, fmt.Sprintf("%s covers this image, but the Pod was created before the credential; the kubelet never re-reads a Pod's pull secrets: recreate it", display(e.cred.c)), e.recreate)
	return true
}

func (e *evidence) webhookNotCalled() bool {
	expl := fmt.Sprintf("%s covers this image and its Secret was ready, but the webhook did not add it: it was not called when the Pod was made", display(e.cred.c))
	if strings.EqualFold(e.pc.s.Webhook.FailurePolicy, "Ignore") {
		expl += " (failurePolicy Ignore lets Pods through while the webhook is down)"
	}
	e.out.conclude(DiagWebhookNotCalled, expl, fmt.Sprintf("kubectl -n %s get pods  # check the webhook's replicas; then: %s", e.pc.s.RegcredNamespace, e.recreate))
	return true
}
