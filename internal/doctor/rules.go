package doctor

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"regcred.dev/regcred/internal/kubeletmsg"
)

// evidence is what the rules look at to explain one finding.
type evidence struct {
	pc  *podContext
	out *Finding
	// creds are regcred's credentials that cover the image.
	creds []credView
	// podHasCredential: a pull Secret of the Pod covers the image.
	podHasCredential bool
	recreate         string
	// cred is the covering credential the delivery rules ask about; nil
	// before them.
	cred *credView
	// failedAt is when the kubelet reported the failure (its Event, or
	// the Pod's creation when no Event tells).
	failedAt time.Time
	// served is a credential regcred's broker served to the Pod's node
	// after the failure, for its namespace and ServiceAccount: the kubelet
	// had it, as if the Pod listed its Secret. servedAt is when the node
	// last asked.
	served   *credView
	servedAt time.Time
}

// hasCredential: the kubelet had a credential for the image, from a pull
// Secret of the Pod or from regcred's broker.
func (e *evidence) hasCredential() bool { return e.podHasCredential || e.served != nil }

// rule is one named check of the diagnosis. diagnose concludes the finding
// and returns true, or returns false and leaves it to the next rule. A rule
// may rely on every rule before it having passed.
type rule struct {
	name     string
	diagnose func(e *evidence) bool
}

// findingRules explain a finding, in order: what the kubelet said alone
// decides first, then the Pod's own pull Secrets, then the credentials
// that cover the image and why none reached the Pod.
var findingRules = []rule{
	{"invalid-image-name", (*evidence).invalidImageName},
	{"never-pull", (*evidence).neverPull},
	{"malformed-pull-secret", (*evidence).malformedPullSecret},
	{"registry-unreachable", (*evidence).registryUnreachable},
	{"rate-limited", (*evidence).rateLimited},
	{"image-not-found", (*evidence).imageNotFound},
	{"unknown-cause", (*evidence).unknownCause},
	// From here the registry refused, or did not know, an image this Pod
	// may lack a credential for.
	{"token-expired", (*evidence).tokenExpired},
	{"listed-credential-not-ready", (*evidence).listedCredentialNotReady},
	{"listed-credential-rejected", (*evidence).listedCredentialRejected},
	{"foreign-pull-secret-rejected", (*evidence).foreignPullSecretRejected},
	{"missing-pull-secret", (*evidence).missingPullSecret},
	{"no-credential", (*evidence).noCredential},
	{"credential-not-delivered", (*evidence).credentialNotDelivered},
}

// explain fills the diagnosis, its explanation and the fix.
func (pc *podContext) explain(out *Finding, creds []credView, podHasCredential bool, failedAt time.Time) {
	e := &evidence{pc: pc, out: out, creds: creds, podHasCredential: podHasCredential, recreate: pc.recreateCommand(),
		failedAt: failedAt}
	if e.failedAt.IsZero() {
		// The pull cannot have failed before the Pod existed.
		e.failedAt = pc.pod.CreationTimestamp.Time
	}
	e.served, e.servedAt = e.servedToNode()
	e.apply(findingRules)
}

// apply runs the rules in order until one concludes.
func (e *evidence) apply(rules []rule) bool {
	for _, r := range rules {
		if r.diagnose(e) {
			return true
		}
	}
	return false
}

func (e *evidence) invalidImageName() bool {
	if e.out.Cause != kubeletmsg.InvalidImageName {
		return false
	}
	e.out.conclude(DiagInvalidImageName, fmt.Sprintf("the image reference %q cannot be parsed: the kubelet will not try it", e.out.Image),
		e.pc.setImageCommand(e.out))
	return true
}

func (e *evidence) neverPull() bool {
	if e.out.Cause != kubeletmsg.NeverPull {
		return false
	}
	e.out.conclude(DiagNeverPull, "imagePullPolicy is Never and the image is not on the node, or this Pod may not use the copy there",
		e.pc.pullPolicyFix())
	return true
}

func (e *evidence) malformedPullSecret() bool {
	pc, out := e.pc, e.out
	if pc.badPull == nil {
		return false
	}
	ns := pc.pod.Namespace
	out.Cause = kubeletmsg.MalformedSecret
	name := strings.TrimPrefix(pc.badPull.Secret, ns+"/")
	expl := fmt.Sprintf("pull Secret %s cannot be parsed (%v): the kubelet fails every pull of this Pod before it contacts a registry", name, pc.badPull.Err)
	fix := fmt.Sprintf("regcred secret create %s -n %s --server %s --username USER --password-stdin --apply  # rewrite it, then recreate the Pod: %s", name, ns, registryHost(out.Image), e.recreate)
	if owner := pc.secretOf[name]; owner != "" {
		fix = fmt.Sprintf("kubectl -n %s delete secret %s  # %s writes it again; then: %s", ns, name, owner, e.recreate)
	}
	out.conclude(DiagMalformedSecret, expl, fix)
	return true
}

// networkCauses are the causes of a registry the node cannot reach.
var networkCauses = []kubeletmsg.Cause{kubeletmsg.TLS, kubeletmsg.DNS, kubeletmsg.Connection, kubeletmsg.Timeout}

func (e *evidence) registryUnreachable() bool {
	if !slices.Contains(networkCauses, e.out.Cause) {
		return false
	}
	e.out.conclude(DiagNetwork, networkExplanation(e.out.Cause, registryHost(e.out.Image)),
		checkCommand(e.out, "from where you run it; then fix the nodes' DNS, network or CA trust"))
	return true
}

func (e *evidence) rateLimited() bool {
	if e.out.Cause != kubeletmsg.RateLimited {
		return false
	}
	expl := "the registry is rate-limiting pulls (429)"
	if !e.hasCredential() {
		expl += " and this Pod pulls anonymously, which has the lowest limit"
	}
	e.out.conclude(DiagRateLimited, expl,
		checkCommand(e.out, fmt.Sprintf("shows the pulls left; authenticate with a credential for %s, or pull through a mirror (ClusterImageMirror)", registryHost(e.out.Image))))
	return true
}

// imageNotFound: without a credential of its own, a Pod may be told "not
// found" for a private image; the rules about credentials decide then.
func (e *evidence) imageNotFound() bool {
	if e.out.Cause != kubeletmsg.NotFound || !(e.hasCredential() || len(e.creds) == 0) {
		return false
	}
	e.out.conclude(DiagImageNotFound, fmt.Sprintf("the registry has no image %s: the repository or tag does not exist", e.out.Image),
		checkCommand(e.out, "then fix the image name or tag, or push the image"))
	return true
}

func (e *evidence) unknownCause() bool {
	if e.out.Cause != kubeletmsg.Other || !e.hasCredential() {
		return false
	}
	if !e.podHasCredential {
		e.out.conclude(DiagUnknown, fmt.Sprintf("the kubelet's message names no cause regcred knows; regcred's broker served %s for the image to node %s", display(e.served.c), e.pc.pod.Spec.NodeName),
			fmt.Sprintf("kubectl describe %s  # then the kubelet's log on node %s: journalctl -u kubelet | grep %s", objectRef(e.served.c), e.pc.pod.Spec.NodeName, registryHost(e.out.Image)))
		return true
	}
	e.out.conclude(DiagUnknown, "the kubelet's message names no cause regcred knows; the Pod has a credential for the image",
		checkCommand(e.out, "asks the registry the way the pull did"))
	return true
}

// listedCredential is the first covering credential whose Secret the Pod
// lists, when a pull Secret of the Pod covers the image; else the one
// regcred's broker served to the Pod's node after the failure (the same
// rules then explain why the registry refused it); else nil.
func (e *evidence) listedCredential() *credView {
	if !e.podHasCredential {
		return e.served
	}
	for i := range e.creds {
		if e.creds[i].inPod {
			return &e.creds[i]
		}
	}
	return nil
}

func (e *evidence) tokenExpired() bool {
	v := e.listedCredential()
	if v == nil || !expired(v.c, e.pc.s.Now) {
		return false
	}
	e.out.Cause = kubeletmsg.TokenExpired
	e.out.conclude(DiagTokenExpired, fmt.Sprintf("the cloud token of %s expired at %s and was not refreshed", display(v.c), v.state.TokenExpiresAt),
		fmt.Sprintf("kubectl describe %s  # the Ready condition says why the token was not refreshed", objectRef(v.c)))
	return true
}

func (e *evidence) listedCredentialNotReady() bool {
	v := e.listedCredential()
	if v == nil || v.state.Ready != "False" {
		return false
	}
	holds := "its Secret may hold"
	if !v.inPod {
		holds = "regcred's broker may serve"
	}
	e.out.conclude(DiagSourceInvalid, fmt.Sprintf("%s is not Ready (%s): %s an old or no credential", display(v.c), v.state.Reason, holds),
		fmt.Sprintf("kubectl describe %s", objectRef(v.c)))
	return true
}

func (e *evidence) listedCredentialRejected() bool {
	v := e.listedCredential()
	if v == nil {
		return false
	}
	how, verified := "Secret "+v.secret, ""
	if !v.inPod {
		how, verified = e.servedHow(), verifiedSays(v.c)
	}
	e.out.conclude(DiagCredentialRejected, fmt.Sprintf("the registry refused the login of %s (%s): its source holds a wrong, expired or revoked password, or one without pull access%s", display(v.c), how, verified),
		sourceFix(v.c, e.pc.s.RegcredNamespace, registryHost(e.out.Image)))
	return true
}

// foreignPullSecretRejected: the pull Secret that covers the image is not
// one of regcred's.
func (e *evidence) foreignPullSecretRejected() bool {
	if !e.podHasCredential {
		return false
	}
	var names []string
	for _, p := range e.out.PullSecrets {
		if p.Covers {
			names = append(names, p.Name)
		}
	}
	e.out.conclude(DiagCredentialRejected, fmt.Sprintf("the registry refused the login of pull Secret %s, which regcred does not manage", strings.Join(names, ", ")),
		fmt.Sprintf("regcred secret create %s -n %s --server %s --username USER --password-stdin --apply  # with a working password or token", names[0], e.pc.pod.Namespace, registryHost(e.out.Image)))
	return true
}

func (e *evidence) missingPullSecret() bool {
	pc := e.pc
	if len(pc.missing) == 0 || len(e.creds) > 0 {
		return false
	}
	ns := pc.pod.Namespace
	e.out.Cause = kubeletmsg.MissingSecret
	e.out.conclude(DiagMissingSecret, fmt.Sprintf("the Pod lists pull Secret %s, which does not exist in %s; the kubelet skipped it and pulled without a credential", strings.Join(pc.missing, ", "), ns),
		fmt.Sprintf("regcred secret create %s -n %s --server %s --username USER --password-stdin --apply  # then: %s", secretNameArg(pc.missing[0]), ns, registryHost(e.out.Image), e.recreate))
	return true
}

func (e *evidence) noCredential() bool {
	if len(e.creds) > 0 {
		return false
	}
	host := registryHost(e.out.Image)
	e.out.conclude(DiagNoCredential, fmt.Sprintf("no regcred credential covers %s, and no pull Secret of the Pod does: the kubelet pulled without a credential", host),
		fmt.Sprintf("regcred secret create %s-pull -n %s --server %s --username USER --password-stdin --apply  # then a ClusterRegistryCredential with registries [%s] and source.secretRef %s-pull",
			dnsLabel(host), e.pc.s.RegcredNamespace, host, host, dnsLabel(host)))
	return true
}

// sortedCreds are the covering credentials in the order the delivery
// rules ask about them: RegistryCredentials, then cluster ones, by name.
func (e *evidence) sortedCreds() []credView {
	sorted := slices.Clone(e.creds)
	slices.SortStableFunc(sorted, func(a, b credView) int {
		return cmp.Or(cmp.Compare(b.c.Kind, a.c.Kind), cmp.Compare(a.c.Name, b.c.Name))
	})
	return sorted
}

// credentialNotDelivered: credentials cover the image but none reached the
// Pod. The delivery rules say why, for the first one in a stable order
// (RegistryCredentials, then cluster ones, by name).
func (e *evidence) credentialNotDelivered() bool {
	sorted := e.sortedCreds()
	if e.cred = e.nodeCandidate(sorted); e.cred != nil {
		return e.apply(nodeDeliveryRules)
	}
	// The Secret rules ask only about credentials that have a Secret.
	sorted = slices.DeleteFunc(sorted, func(v credView) bool { return !v.c.DeliversSecrets() })
	e.cred = &sorted[0]
	if slices.Contains(e.pc.missing, e.cred.secret) && e.cred.inPod {
		e.out.Cause = kubeletmsg.MissingSecret
	}
	return e.apply(deliveryRules)
}
