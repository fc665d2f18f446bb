package release_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/webhook"
)

// neededRules is every permission the chart may give regcred's
// ServiceAccount, each with the reason it is needed (docs/security.md says
// the same at length). A grant the chart renders that is not here fails
// TestChartRBACIsNeeded: add it here only with its argument.
//
// when: always; leader (leaderElection.enabled); selfcerts (webhook on,
// certificates: self); webidentity (webIdentity.enabled, all namespaces);
// webidentity-ns (webIdentity.namespaces set); tokenreview (webIdentity
// enabled either way); nodecreds (nodeCredentials.enabled; tokenreview
// too); policies (podInjection=policy). scope: "cluster" (a ClusterRoleBinding) or the namespace of the
// RoleBinding; "nodes cluster" is a ClusterRoleBinding to the group
// system:nodes (the kubelets), the only subject besides regcred's
// ServiceAccount.
var neededRules = []struct {
	when, scope, group, resources, verbs, names, why string
}{
	{"always", "cluster", "", "events", "list,watch", "", "the kubelet's pull-failure Events, for regcred_image_pull_failures_total (the API server filters them by reason)"},
	{"always", "cluster", "", "namespaces", "get,list,watch", "", "which namespaces a credential applies to (selectors, terminating ones); get: the webhook reads a Pod's namespace fresh when the cache has not seen it yet"},
	{"always", "cluster", "", "secrets", "get,list,watch", "", "the cache of managed Secrets (label-selected, every namespace) and source Secrets read by name; RBAC cannot select by label"},
	{"always", "cluster", "", "secrets", "create,update,delete", "", "managed Secrets are written in every namespace a credential applies to, and deleted when it no longer does"},
	{"always", "cluster", "", "serviceaccounts", "get,list,watch,patch", "", "imagePullSecrets entries are patched into the ServiceAccounts of every namespace; get: the web-identity opt-in annotation read fresh"},
	{"always", "cluster", "events.k8s.io", "events", "create,patch", "", "Events on credentials; patch counts a repeated Event"},
	{"always", "cluster", "regcred.dev", "clusterimagemirrors", "get,list,watch", "", "the webhook's mirror rules"},
	{"always", "cluster", "regcred.dev", "clusterregistrycredentials,registrycredentials", "get,list,watch,patch", "", "the credentials; patch adds and removes regcred's finalizer"},
	{"always", "cluster", "regcred.dev", "clusterregistrycredentials/status,registrycredentials/status", "patch", "", "status, patched with an optimistic lock"},
	{"leader", "regcred-system", "coordination.k8s.io", "leases", "create", "", "the leader election Lease's first creation (create cannot name its object)"},
	{"leader", "regcred-system", "coordination.k8s.io", "leases", "get,update", "regcred-manager", "leader election: read and renew the Lease, by name"},
	{"leader", "regcred-system", "", "events", "create,patch", "", "leader election's Events (controller-runtime records them with the core/v1 recorder), in regcred's namespace only"},
	{"selfcerts", "regcred-system", "", "secrets", "create", "", "the webhook's CA and serving certificate, the first time (create cannot name its object)"},
	{"selfcerts", "regcred-system", "", "secrets", "get,update", "regcred-webhook-tls", "the webhook's CA and serving certificate, read and renewed by name"},
	{"selfcerts", "cluster", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "get,update", "regcred", "the caBundle of the chart's MutatingWebhookConfiguration, by name; the chart creates and deletes it"},
	{"webidentity", "cluster", "", "serviceaccounts/token", "create", "", "web identities: a token for an opted-in ServiceAccount of any namespace"},
	{"webidentity-ns", "team-a", "", "serviceaccounts/token", "create", "", "web identities, only in the namespaces listed"},
	{"webidentity-ns", "team-b", "", "serviceaccounts/token", "create", "", "web identities, only in the namespaces listed"},
	{"tokenreview", "cluster", "authentication.k8s.io", "tokenreviews", "create", "", "a minted token leaves the manager only if the API server would refuse it; the broker checks each kubelet request's ServiceAccount token"},
	{"nodecreds", "cluster", "", "pods", "get", "", "the broker reads the Pod a token is bound to, by name: it must exist, run on the token's node and use its ServiceAccount"},
	{"nodecreds", "regcred-system", "", "configmaps", "create", "", "the node agent's ConfigMap (broker CA, server name), the first time (create cannot name its object)"},
	{"nodecreds", "regcred-system", "", "configmaps", "get,update", "regcred-node-credentials", "the node agent's ConfigMap, kept current by name"},
	{"always", "cluster", "admissionregistration.k8s.io", "mutatingadmissionpolicies,mutatingadmissionpolicybindings", "list,delete", "", "the leader removes the admission policies it generated (labelled regcred.dev/pod-injection=true) when Pods are injected another way: the webhook, after podInjection=policy"},
	{"policies", "cluster", "admissionregistration.k8s.io", "mutatingadmissionpolicies,mutatingadmissionpolicybindings", "get,create,update", "", "podInjection=policy: the leader writes the policies that inject Pods (their names follow the namespaces, so they cannot be named here)"},
	{"nodecreds", "nodes cluster", "", "regcred.dev", "request-serviceaccounts-token-audience", "", "kubelets mint the Pods' ServiceAccount tokens for regcred's audience (NodeRestriction asks this of the audience); only the broker accepts it"},
}

// grant is one verb on one resource (and name) in one scope.
type grant struct{ scope, group, resource, verb, name string }

func (g grant) String() string {
	return fmt.Sprintf("%s: %s/%s %s %s", g.scope, g.group, g.resource, g.verb, g.name)
}

func expand(scope string, groups, resources, verbs, names []string) []grant {
	if len(names) == 0 {
		names = []string{""}
	}
	var out []grant
	for _, g := range groups {
		for _, r := range resources {
			for _, v := range verbs {
				for _, n := range names {
					out = append(out, grant{scope, g, r, v, n})
				}
			}
		}
	}
	return out
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// TestChartRBACIsNeeded: for each setting that changes RBAC, the grants
// the chart gives regcred's ServiceAccount (through every binding, to every
// Role and ClusterRole it renders) are exactly the needed ones above.
func TestChartRBACIsNeeded(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	helm := testenv.Tool(t, "helm3")
	for _, tc := range []struct {
		set  []string
		when []string
	}{
		{nil, []string{"always", "leader", "selfcerts"}},
		{[]string{"webIdentity.enabled=true"}, []string{"always", "leader", "selfcerts", "webidentity", "tokenreview"}},
		{[]string{"webIdentity.enabled=true", "webIdentity.namespaces={team-a,team-b}"}, []string{"always", "leader", "selfcerts", "webidentity-ns", "tokenreview"}},
		{[]string{"webIdentity.namespaces={team-a}"}, []string{"always", "leader", "selfcerts"}},
		{[]string{"webhook.certificates=cert-manager"}, []string{"always", "leader"}},
		{[]string{"webhook.enabled=false", "leaderElection.enabled=false"}, []string{"always"}},
		{[]string{"nodeCredentials.enabled=true"}, []string{"always", "leader", "selfcerts", "nodecreds", "tokenreview"}},
		{[]string{"nodeCredentials.enabled=true", "webIdentity.enabled=true"}, []string{"always", "leader", "selfcerts", "nodecreds", "webidentity", "tokenreview"}},
		{[]string{"podInjection=policy"}, []string{"always", "leader", "selfcerts", "policies"}},
	} {
		t.Run(strings.Join(tc.set, ","), func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			got := chartGrants(t, objects(t, render(t, helm, args...)))
			want := map[grant]bool{}
			for _, r := range neededRules {
				if slices.Contains(tc.when, r.when) {
					for _, g := range expand(r.scope, []string{r.group}, split(r.resources), split(r.verbs), split(r.names)) {
						want[g] = true
					}
				}
			}
			for g := range got {
				if !want[g] {
					t.Errorf("the chart grants %s, which neededRules does not argue for", g)
				}
			}
			for g := range want {
				if !got[g] {
					t.Errorf("the chart does not grant %s (needed: see neededRules)", g)
				}
			}
		})
	}
}

// chartGrants follows every RoleBinding and ClusterRoleBinding of the
// rendering to its role. A binding to anyone but regcred's ServiceAccount
// (or the group system:nodes, whose grants are scoped "nodes ..."), a role
// that aggregates others or a binding to a role the chart does not ship
// fails the test.
func chartGrants(t *testing.T, objs []*unstructured.Unstructured) map[grant]bool {
	t.Helper()
	roles := map[string][]rbacv1.PolicyRule{}
	for _, u := range objs {
		if u.GetKind() != "ClusterRole" && u.GetKind() != "Role" {
			continue
		}
		var r rbacv1.ClusterRole
		if !findNamed(t, []*unstructured.Unstructured{u}, u.GetKind(), u.GetName(), &r) {
			t.Fatal("unreachable")
		}
		if r.AggregationRule != nil {
			t.Errorf("ClusterRole %s aggregates other roles: its rules cannot be held to a list", r.Name)
		}
		roles[u.GetKind()+"/"+u.GetNamespace()+"/"+u.GetName()] = r.Rules
	}
	out := map[grant]bool{}
	for _, u := range objs {
		if u.GetKind() != "ClusterRoleBinding" && u.GetKind() != "RoleBinding" {
			continue
		}
		var b rbacv1.RoleBinding
		if !findNamed(t, []*unstructured.Unstructured{u}, u.GetKind(), u.GetName(), &b) {
			t.Fatal("unreachable")
		}
		who := ""
		for i, s := range b.Subjects {
			w := "?"
			switch {
			case s.Kind == "ServiceAccount" && s.Name == "regcred-manager" && s.Namespace == "regcred-system":
				w = ""
			case s.Kind == "Group" && s.Name == "system:nodes":
				w = "nodes "
			default:
				t.Errorf("%s %s binds %s %s/%s, not regcred's ServiceAccount", u.GetKind(), b.Name, s.Kind, s.Namespace, s.Name)
			}
			if i > 0 && w != who {
				t.Errorf("%s %s binds regcred's ServiceAccount and the nodes together", u.GetKind(), b.Name)
			}
			who = w
		}
		scope, ns := "cluster", ""
		if u.GetKind() == "RoleBinding" {
			scope = u.GetNamespace()
			if b.RoleRef.Kind == "Role" {
				ns = u.GetNamespace()
			}
		}
		rules, ok := roles[b.RoleRef.Kind+"/"+ns+"/"+b.RoleRef.Name]
		if !ok {
			t.Errorf("%s %s binds %s %s, which the chart does not render", u.GetKind(), b.Name, b.RoleRef.Kind, b.RoleRef.Name)
		}
		for _, r := range rules {
			if len(r.NonResourceURLs) > 0 {
				t.Errorf("%s grants nonResourceURLs %v", b.RoleRef.Name, r.NonResourceURLs)
			}
			for _, g := range expand(who+scope, r.APIGroups, r.Resources, r.Verbs, r.ResourceNames) {
				out[g] = true
			}
		}
	}
	return out
}

// TestChartNetworkPolicy: the manager's Pods accept the webhook, probes
// and metrics only, and reach DNS, the API server, registries on 443 and
// the metadata server only; CIDR settings narrow the egress.
func TestChartNetworkPolicy(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	helm := testenv.Tool(t, "helm3")
	var np networkingv1.NetworkPolicy
	if !find(t, objects(t, render(t, helm)), "NetworkPolicy", &np) {
		t.Fatal("no NetworkPolicy by default")
	}
	if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] == "" || len(np.Spec.PolicyTypes) != 2 {
		t.Errorf("selector %v, policy types %v", np.Spec.PodSelector, np.Spec.PolicyTypes)
	}
	if got, want := policyPorts(np.Spec.Ingress), []string{"TCP/8080 any", "TCP/8081 any", "TCP/9443 any"}; !slices.Equal(got, want) {
		t.Errorf("ingress %v, want %v", got, want)
	}
	if got, want := egressPorts(np.Spec.Egress), []string{"TCP/443 any", "TCP/53 any", "TCP/6443 any", "TCP/80 169.254.169.254/32", "TCP/988 169.254.169.252/32", "UDP/53 any"}; !slices.Equal(got, want) {
		t.Errorf("egress %v, want %v", got, want)
	}

	objs := objects(t, render(t, helm, "--set", "networkPolicy.apiServerCIDRs={10.0.0.1/32}", "--set", "networkPolicy.registryCIDRs={192.0.2.0/24}",
		"--set", "networkPolicy.cloudMetadata=false", "--set", "webhook.enabled=false"))
	find(t, objs, "NetworkPolicy", &np)
	if got, want := policyPorts(np.Spec.Ingress), []string{"TCP/8080 any", "TCP/8081 any"}; !slices.Equal(got, want) {
		t.Errorf("without the webhook: ingress %v, want %v", got, want)
	}
	if got, want := egressPorts(np.Spec.Egress), []string{"TCP/443 10.0.0.1/32", "TCP/443 192.0.2.0/24", "TCP/53 any", "TCP/6443 10.0.0.1/32", "UDP/53 any"}; !slices.Equal(got, want) {
		t.Errorf("with CIDRs: egress %v, want %v", got, want)
	}
	if k := kinds(objects(t, render(t, helm, "--set", "networkPolicy.enabled=false"))); k["NetworkPolicy"] != 0 {
		t.Errorf("networkPolicy.enabled=false renders %d NetworkPolicies", k["NetworkPolicy"])
	}
}

func policyPorts(rules []networkingv1.NetworkPolicyIngressRule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, portPeers(r.Ports, r.From)...)
	}
	slices.Sort(out)
	return out
}

func egressPorts(rules []networkingv1.NetworkPolicyEgressRule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, portPeers(r.Ports, r.To)...)
	}
	slices.Sort(out)
	return out
}

// portPeers lists "PROTO/port peer" for a rule; "any" for no peers.
func portPeers(ports []networkingv1.NetworkPolicyPort, peers []networkingv1.NetworkPolicyPeer) []string {
	names := []string{"any"}
	if len(peers) > 0 {
		names = nil
		for _, p := range peers {
			if p.IPBlock != nil {
				names = append(names, p.IPBlock.CIDR)
			} else {
				names = append(names, "selector")
			}
		}
	}
	var out []string
	for _, p := range ports {
		port := intstr.FromInt32(0)
		if p.Port != nil {
			port = *p.Port
		}
		for _, n := range names {
			out = append(out, fmt.Sprintf("%s/%s %s", *p.Protocol, port.String(), n))
		}
	}
	return out
}

// TestChartRBACIsEnough: on the real API server, with the chart's RBAC
// applied and nothing else, regcred's ServiceAccount can do what the
// webhook TLS keeper (its Secret, the configuration's caBundle) and leader
// election do, and cannot do what the chart no longer grants by default.
// The controllers' cluster-wide rules are exercised by test/install.
func TestChartRBACIsEnough(t *testing.T) {
	testenv.SkipShort(t, "runs Helm and an API server")
	helm := testenv.Tool(t, "helm3")
	cp := suite.ControlPlane(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "regcred-system"}}
	if err := cp.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, u := range objects(t, render(t, helm)) {
		switch u.GetKind() {
		case "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount", "MutatingWebhookConfiguration":
			if err := cp.Client.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
			}
			t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), u) })
		}
	}
	cfg := rest.CopyConfig(cp.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:regcred-system:regcred-manager"}
	sa, err := client.New(cfg, client.Options{Scheme: cp.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	// RBAC may take a moment to see new bindings.
	tls := &webhook.TLS{Config: webhook.Config{Namespace: "regcred-system", SecretName: "regcred-webhook-tls", CertDir: t.TempDir(),
		Hosts: []string{"regcred-webhook.regcred-system.svc"}, ConfigurationName: "regcred", ManageCertificates: true},
		Reader: sa, Writer: sa, Log: testr.New(t)}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err = tls.Ensure(ctx); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(func() {
		_ = cp.Client.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "regcred-system", Name: "regcred-webhook-tls"}})
	})
	if err != nil {
		t.Fatalf("the webhook's TLS keeper with the chart's rules: %v", err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: "regcred"}, &mwc); err != nil || len(mwc.Webhooks[0].ClientConfig.CABundle) == 0 {
		t.Errorf("caBundle not injected (%v)", err)
	}

	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lock := &resourcelock.LeaseLock{LeaseMeta: metav1.ObjectMeta{Namespace: "regcred-system", Name: "regcred-manager"},
		Client: cs.CoordinationV1(), LockConfig: resourcelock.ResourceLockConfig{Identity: "test"}}
	rec := resourcelock.LeaderElectionRecord{HolderIdentity: "test", LeaseDurationSeconds: 15, AcquireTime: metav1.Now(), RenewTime: metav1.Now()}
	if err := lock.Create(ctx, rec); err != nil {
		t.Fatalf("create the Lease: %v", err)
	}
	t.Cleanup(func() {
		_ = cp.Client.Delete(context.Background(), &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "regcred-system", Name: "regcred-manager"}})
	})
	if _, _, err := lock.Get(ctx); err != nil {
		t.Fatalf("get the Lease: %v", err)
	}
	rec.RenewTime = metav1.Now()
	if err := lock.Update(ctx, rec); err != nil {
		t.Fatalf("renew the Lease: %v", err)
	}

	// Not granted by default.
	other := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "regcred-system", Name: "someone-else"}}
	for what, err := range map[string]error{
		"list MutatingWebhookConfigurations": sa.List(ctx, &admissionregistrationv1.MutatingWebhookConfigurationList{}),
		"delete another Lease":               sa.Delete(ctx, other),
		"mint a ServiceAccount token": sa.SubResource("token").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "regcred-system", Name: "regcred-manager"}},
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}}}),
	} {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want Forbidden", what, err)
		}
	}
}
