package doctor

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/redact"
)

// nodeDeliveryRules explain, in order, why regcred's broker gave the
// kubelet nothing for a covering credential delivered to nodes only
// (spec.delivery Node, evidence.cred): it has no Secret by design, so
// none of the Secret rules apply. Where the credential acts, which
// ServiceAccounts it serves, whether it can be rendered, whether the
// manager serves the broker, and last whether the node's kubelet asked.
// A credential the broker did serve to the node is explained by the
// listed-credential rules before these. The last rule always concludes.
var nodeDeliveryRules = []rule{
	{"node-namespace-always-excluded", (*evidence).namespaceAlwaysExcluded},
	{"node-namespace-excluded", (*evidence).namespaceExcluded},
	{"node-namespace-not-selected", (*evidence).namespaceNotSelected},
	{"node-service-account-not-selected", (*evidence).serviceAccountNotSelected},
	{"node-credential-not-ready", (*evidence).nodeCredentialNotReady},
	{"node-credentials-not-served", (*evidence).nodeCredentialsNotServed},
	{"broker-not-asked", (*evidence).brokerNotAsked},
}

// statusSlack is how far before the kubelet's Event a request in
// status.delivery still counts for the pull: the kubelet asks the plugin
// just before it pulls, and each replica adds its requests to the status
// every 30 seconds.
const statusSlack = 60 * time.Second

// maxQuoted bounds what the doctor quotes of a credential's status.
const maxQuoted = 200

// nodeOnly: the credential is delivered to kubelets and has no Secret.
func nodeOnly(c *credential.Credential) bool { return c.DeliversToNodes() && !c.DeliversSecrets() }

// serviceAccount is the Pod's ServiceAccount, or one of its name with no
// labels when it was not found.
func (pc *podContext) serviceAccount() *corev1.ServiceAccount {
	if pc.sa != nil {
		return pc.sa
	}
	sa := &corev1.ServiceAccount{}
	sa.Namespace, sa.Name = pc.pod.Namespace, pc.saName
	return sa
}

// nodeReach is how far the broker would get with a credential for this
// Pod: 0 not its namespace, 1 not its ServiceAccount (or that does not
// exist: the broker refuses it), 2 both selected. Namespaces the caller
// may not read count as selected: a note says they were not checked.
func (pc *podContext) nodeReach(v *credView) int {
	if pc.ns != nil {
		if ok, err := v.entry.Applies(pc.ns); err != nil || !ok {
			return 0
		}
	}
	if ok, err := v.entry.SelectsServiceAccount(pc.serviceAccount()); err != nil || !ok || pc.sa == nil {
		return 1
	}
	return 2
}

// servedToNode is the first covering credential delivered to nodes that
// selects the Pod's namespace and ServiceAccount and that regcred's broker
// served to the Pod's node at or after the failure (status.delivery), and
// when the node last asked; nil when none.
func (e *evidence) servedToNode() (*credView, time.Time) {
	node := e.pc.pod.Spec.NodeName
	if node == "" {
		return nil, time.Time{}
	}
	sorted := e.sortedCreds()
	for i := range sorted {
		v := &sorted[i]
		if !v.c.DeliversToNodes() || e.pc.nodeReach(v) < 2 {
			continue
		}
		d := v.c.Status.Delivery
		at, ok := nodeRequest(d, node)
		if ok && e.recent(at) && d.LastServedAt != nil && e.recent(d.LastServedAt.Time) {
			return v, at
		}
	}
	return nil, time.Time{}
}

// recent: t is at or after the failure, give or take statusSlack.
func (e *evidence) recent(t time.Time) bool { return !t.Before(e.failedAt.Add(-statusSlack)) }

// nodeRequest is when node last asked the broker about the credential.
func nodeRequest(d *v1alpha1.DeliveryStatus, node string) (time.Time, bool) {
	if d == nil {
		return time.Time{}, false
	}
	for _, n := range d.Nodes {
		if n.Name == node {
			return n.LastRequestAt.Time, true
		}
	}
	return time.Time{}, false
}

// nodeCandidate is the covering credential delivered to nodes only that
// the node rules ask about, the one the broker got furthest with for this
// Pod (first in sorted's order among equals); nil when no such credential
// covers the image, or when credentials with Secrets cover it too and no
// node one acts in the namespace: the Secret rules explain those.
func (e *evidence) nodeCandidate(sorted []credView) *credView {
	var best *credView
	bestReach, others := -1, false
	for i := range sorted {
		v := &sorted[i]
		if !nodeOnly(v.c) {
			others = true
			continue
		}
		if r := e.pc.nodeReach(v); r > bestReach {
			best, bestReach = v, r
		}
	}
	if best == nil || (others && bestReach == 0) {
		return nil
	}
	return best
}

// nodeSuffix says, for a credential delivered to nodes only, what a
// namespace it does not act in means.
func (e *evidence) nodeSuffix() string {
	if nodeOnly(e.cred.c) {
		return ": regcred's broker serves it to no Pod there"
	}
	return ""
}

// afterFix is what follows a fix that changes a selection: a Secret
// reaches only new Pods; the broker answers the kubelet's next attempt.
func (e *evidence) afterFix() string {
	if nodeOnly(e.cred.c) {
		return "the kubelet's next pull attempt gets it"
	}
	return "then recreate the Pod"
}

// refusalNaming is the broker's last refusal of the credential, bounded
// and printable, when it names what (and came at or after the failure);
// else "".
func (e *evidence) refusalNaming(what string) string {
	d := e.cred.c.Status.Delivery
	if d == nil || d.LastRefusal == "" || !strings.Contains(d.LastRefusal, what) {
		return ""
	}
	if d.LastRefusedAt != nil && !e.recent(d.LastRefusedAt.Time) {
		return ""
	}
	return redact.Truncate(Sanitize(d.LastRefusal), maxQuoted)
}

func (e *evidence) serviceAccountNotSelected() bool {
	pc, v := e.pc, e.cred
	if pc.nodeReach(v) >= 2 {
		return false
	}
	ref := pc.pod.Namespace + "/" + pc.saName
	expl := fmt.Sprintf("%s covers this image but its spec.serviceAccounts (%s) does not select ServiceAccount %s, so regcred's broker gives the kubelet nothing for this Pod",
		display(v.c), serviceAccountMode(v.c), ref)
	if pc.sa == nil {
		expl = fmt.Sprintf("%s covers this image but ServiceAccount %s does not exist, and regcred's broker serves only a ServiceAccount that does", display(v.c), ref)
	}
	if q := e.refusalNaming("ServiceAccount " + ref + " "); q != "" {
		expl += fmt.Sprintf("; the broker's last refusal: %q", q)
	}
	e.out.conclude(DiagServiceAccountNotSelected, expl, e.serviceAccountFix())
	return true
}

func serviceAccountMode(c *credential.Credential) string {
	if m := c.Spec.ServiceAccounts.Mode; m != "" {
		return "mode " + string(m)
	}
	return "mode All"
}

// serviceAccountFix labels the ServiceAccount when a plain matchLabels
// selector picks ServiceAccounts, else edits spec.serviceAccounts.
func (e *evidence) serviceAccountFix() string {
	pc, c := e.pc, e.cred.c
	sel := c.Spec.ServiceAccounts.Selector
	if pc.sa != nil && c.Spec.ServiceAccounts.Mode == v1alpha1.ServiceAccountsSelector && sel != nil && len(sel.MatchExpressions) == 0 && len(sel.MatchLabels) > 0 {
		var kv []string
		for k, v := range sel.MatchLabels {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv)
		return fmt.Sprintf("kubectl -n %s label serviceaccount %s %s  # %s; or change spec.serviceAccounts of %s",
			pc.pod.Namespace, pc.saName, strings.Join(kv, " "), e.afterFix(), objectRef(c))
	}
	return fmt.Sprintf("kubectl edit %s  # make spec.serviceAccounts select ServiceAccount %s/%s (mode All, or a selector matching its labels); %s",
		objectRef(c), pc.pod.Namespace, pc.saName, e.afterFix())
}

func (e *evidence) nodeCredentialNotReady() bool {
	v := e.cred
	if v.state.Ready != "False" {
		return false
	}
	e.out.conclude(DiagSourceInvalid, fmt.Sprintf("%s covers this image but is not Ready (%s): regcred's broker cannot render it, and gives the kubelet nothing for it", display(v.c), v.state.Reason),
		fmt.Sprintf("kubectl describe %s", objectRef(v.c)))
	return true
}

func (e *evidence) nodeCredentialsNotServed() bool {
	ns := e.pc.s.RegcredNamespace
	if e.pc.s.NodeCredentials != BrokerAbsent {
		return false
	}
	e.out.conclude(DiagNodeCredentialsOff, fmt.Sprintf("%s covers this image with delivery Node, but regcred's manager does not serve node credentials: ConfigMap %s does not exist in %s", display(e.cred.c), nodecreds.ConfigMapName, ns),
		fmt.Sprintf("helm upgrade regcred regcred/regcred -n %s --reuse-values --set nodeCredentials.enabled=true  # or run the manager with --node-credentials", ns))
	return true
}

// brokerNotAsked: everything on regcred's side is in place, and the
// credential's status shows no request from the Pod's node since the
// failure.
func (e *evidence) brokerNotAsked() bool {
	v, node := e.cred, e.pc.pod.Spec.NodeName
	if node == "" {
		node = "(none)"
	}
	expl := fmt.Sprintf("%s covers this image and selects the Pod, but the kubelet on node %s did not ask regcred's broker for it when the pull failed at %s (or the answer did not arrive): "+
		"either %s is not configured for regcred, or its plugin cannot reach the broker (the kubelet's log on %s has the plugin's one-line reason, e.g. \"regcred broker at https://…: connection refused\")",
		display(v.c), node, e.failedAt.UTC().Format(time.RFC3339), node, node)
	if at, ok := nodeRequest(v.c.Status.Delivery, node); ok {
		expl += fmt.Sprintf("; it last asked at %s", at.UTC().Format(time.RFC3339))
	}
	if e.pc.s.Now.Sub(e.failedAt) < statusSlack {
		expl += "; the replicas record requests every 30s: if the pull failed less than a minute ago, run the doctor again"
	}
	e.out.conclude(DiagBrokerNotAsked, expl,
		fmt.Sprintf("regcred kubelet-config --match-image %s  # configure node %s's kubelet (the chart's nodeCredentials.enabled installs the plugin); if it is, see why: journalctl -u kubelet | grep regcred",
			registryHost(e.out.Image), node))
	return true
}

// servedHow says how the kubelet had the credential the broker served.
func (e *evidence) servedHow() string {
	return fmt.Sprintf("served by regcred's broker to node %s at %s", e.pc.pod.Spec.NodeName, e.servedAt.UTC().Format(time.RFC3339))
}

// verifiedSays repeats what spec.verify found, when it probed: the
// registry's answer to the same credential.
func verifiedSays(c *credential.Credential) string {
	for _, cond := range c.Status.Conditions {
		if cond.Type == v1alpha1.ConditionVerified && cond.Status == "False" {
			return fmt.Sprintf("; its Verified condition says %s too", cond.Reason)
		}
	}
	return ""
}
