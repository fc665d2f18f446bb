package release_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/nodecreds/kubeletconfig"
	"regcred.dev/regcred/internal/testenv"
)

// TestChartNodeCredentialsGolden renders nodeCredentials.enabled against a
// golden file (go test -run TestChartNodeCredentialsGolden -update) and
// holds the DaemonSet and the manager's flags to the node agent's and the
// broker's contract.
func TestChartNodeCredentialsGolden(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	helm := testenv.Tool(t, "helm3")
	got := render(t, helm, "--set", "nodeCredentials.enabled=true", "--set", "imagePullSecrets[0].name=regcred-image-pull")
	testenv.Golden(t, filepath.Join("testdata", "node-credentials.golden.yaml"), got)
	objs := objects(t, got)

	var ds appsv1.DaemonSet
	if !find(t, objs, "DaemonSet", &ds) {
		t.Fatal("nodeCredentials.enabled renders no DaemonSet")
	}
	var d appsv1.Deployment
	find(t, objs, "Deployment", &d)
	pod := ds.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != d.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("node agent image %q, manager's %q", c.Image, d.Spec.Template.Spec.Containers[0].Image)
	}
	wantArgs := []string{"node-agent", "--plugin-dir=/host/plugin-dir", "--config-dir=/host/config-dir",
		"--source-dir=/etc/regcred/node-credentials", "--service-env=REGCRED_WEBHOOK"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("node agent args %v, want %v", c.Args, wantArgs)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the node agent's Pod gets an API token")
	}
	if pod.EnableServiceLinks == nil || !*pod.EnableServiceLinks {
		t.Error("service links off: --service-env has no variables to read")
	}
	if len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "regcred-image-pull" {
		t.Errorf("imagePullSecrets %v", pod.ImagePullSecrets)
	}
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", pod.PriorityClassName)
	}
	if len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Key != "" {
		t.Errorf("tolerations %v, want every taint tolerated", pod.Tolerations)
	}
	sc := c.SecurityContext
	if sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Privileged != nil ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container security context %+v", sc)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault || pod.HostNetwork || pod.HostPID {
		t.Errorf("pod security context %+v, hostNetwork %v, hostPID %v", psc, pod.HostNetwork, pod.HostPID)
	}

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	for _, v := range pod.Volumes {
		switch v.Name {
		case "plugin-dir", "config-dir":
			want := map[string]string{"plugin-dir": kubeletconfig.DefaultBinDir, "config-dir": nodecreds.DefaultConfigDir}[v.Name]
			if v.HostPath == nil || v.HostPath.Path != want || v.HostPath.Type == nil || *v.HostPath.Type != dirOrCreate {
				t.Errorf("volume %s: %+v, want hostPath %s DirectoryOrCreate", v.Name, v.HostPath, want)
			}
			if m := mounts[v.Name]; m.MountPath != "/host/"+v.Name || m.ReadOnly {
				t.Errorf("volume %s mounted %+v", v.Name, m)
			}
		case "source":
			if v.ConfigMap == nil || v.ConfigMap.Name != nodecreds.ConfigMapName || v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional {
				t.Errorf("volume source: %+v, want the optional ConfigMap %s", v.ConfigMap, nodecreds.ConfigMapName)
			}
			if m := mounts[v.Name]; m.MountPath != "/etc/regcred/node-credentials" || !m.ReadOnly {
				t.Errorf("volume source mounted %+v", m)
			}
		default:
			t.Errorf("unexpected volume %s", v.Name)
		}
	}
	if len(pod.Volumes) != 3 {
		t.Errorf("%d volumes, want 3", len(pod.Volumes))
	}

	// The webhook Service (which the broker shares) must not send the
	// manager's traffic to the node agents.
	var svc corev1.Service
	if !findNamed(t, objs, "Service", "regcred-webhook", &svc) {
		t.Fatal("no Service regcred-webhook")
	}
	if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("the webhook Service %v selects the node agent's Pods %v", svc.Spec.Selector, ds.Spec.Template.Labels)
	}
	if labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("the manager's Deployment selects the node agent's Pods")
	}

	args := d.Spec.Template.Spec.Containers[0].Args
	for _, a := range []string{"--node-credentials=true", "--node-credentials-audience=" + nodecreds.DefaultAudience,
		"--node-credentials-cache-duration=1m", "--node-credentials-node-qps=20", "--node-credentials-node-burst=40"} {
		if !slices.Contains(args, a) {
			t.Errorf("manager args %v lack %s", args, a)
		}
	}
}

// TestChartNodeCredentialsSettings: off by default; the values reach the
// manager's flags, the nodes' RBAC rule and the DaemonSet.
func TestChartNodeCredentialsSettings(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	helm := testenv.Tool(t, "helm3")
	objs := objects(t, render(t, helm))
	if k := kinds(objs); k["DaemonSet"] != 0 {
		t.Errorf("the default renders %d DaemonSets", k["DaemonSet"])
	}
	var d appsv1.Deployment
	find(t, objs, "Deployment", &d)
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(a, "--node-credentials") {
			t.Errorf("the default passes %s", a)
		}
	}

	objs = objects(t, render(t, helm, "--set", "nodeCredentials.enabled=true", "--set", "fullnameOverride=rc",
		"--set", "nodeCredentials.audience=pulls.example.com", "--set", "nodeCredentials.cacheDuration=30s",
		"--set-json", "nodeCredentials.nodeQPS=2.5", "--set", "nodeCredentials.nodeBurst=5",
		"--set", "nodeCredentials.pluginDir=/opt/credential-provider", "--set", "nodeCredentials.configDir=/etc/regcred",
		"--set", "nodeCredentials.agent.tolerations=null", "--set", "nodeCredentials.agent.priorityClassName=",
		"--set", "nodeCredentials.agent.nodeSelector.pool=gpu"))
	find(t, objs, "Deployment", &d)
	args := d.Spec.Template.Spec.Containers[0].Args
	for _, a := range []string{"--node-credentials=true", "--node-credentials-audience=pulls.example.com",
		"--node-credentials-cache-duration=30s", "--node-credentials-node-qps=2.5", "--node-credentials-node-burst=5"} {
		if !slices.Contains(args, a) {
			t.Errorf("manager args %v lack %s", args, a)
		}
	}
	var ds appsv1.DaemonSet
	find(t, objs, "DaemonSet", &ds)
	pod := ds.Spec.Template.Spec
	if !slices.Contains(pod.Containers[0].Args, "--service-env=RC_WEBHOOK") {
		t.Errorf("args %v: want --service-env=RC_WEBHOOK for the Service rc-webhook", pod.Containers[0].Args)
	}
	paths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			paths[v.Name] = v.HostPath.Path
		}
	}
	if paths["plugin-dir"] != "/opt/credential-provider" || paths["config-dir"] != "/etc/regcred" {
		t.Errorf("host paths %v", paths)
	}
	if len(pod.Tolerations) != 0 || pod.PriorityClassName != "" || pod.NodeSelector["pool"] != "gpu" || pod.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Errorf("tolerations %v, priorityClassName %q, nodeSelector %v", pod.Tolerations, pod.PriorityClassName, pod.NodeSelector)
	}
	var role rbacv1.ClusterRole
	if !findNamed(t, objs, "ClusterRole", "rc-node-token-audience", &role) {
		t.Fatal("no ClusterRole rc-node-token-audience")
	}
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Resources, []string{"pulls.example.com"}) {
		t.Errorf("the nodes' rules %+v, want the audience pulls.example.com", role.Rules)
	}
}

// TestChartNodeCredentialsRBAC: on the real API server, with the chart's
// RBAC for nodeCredentials applied, a kubelet (a member of system:nodes)
// may request tokens for regcred's audience and no other, and regcred's
// ServiceAccount may read Pods and keep its ConfigMap, and no other.
func TestChartNodeCredentialsRBAC(t *testing.T) {
	testenv.SkipShort(t, "runs Helm and an API server")
	helm := testenv.Tool(t, "helm3")
	cp := suite.ControlPlane(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "regcred-system"}}
	if err := cp.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, u := range objects(t, render(t, helm, "--set", "nodeCredentials.enabled=true")) {
		switch u.GetKind() {
		case "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			if err := cp.Client.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
			}
			t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), u) })
		}
	}
	node := authorizationv1.SubjectAccessReviewSpec{User: "system:node:node-1", Groups: []string{"system:nodes", "system:authenticated"}}
	manager := authorizationv1.SubjectAccessReviewSpec{User: "system:serviceaccount:regcred-system:regcred-manager",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:regcred-system", "system:authenticated"}}
	audience := func(aud string) *authorizationv1.ResourceAttributes {
		return &authorizationv1.ResourceAttributes{Namespace: "team-a", Verb: "request-serviceaccounts-token-audience", Resource: aud, Name: "default"}
	}
	cases := []struct {
		what  string
		who   authorizationv1.SubjectAccessReviewSpec
		attrs *authorizationv1.ResourceAttributes
		allow bool
	}{
		{"a node requests a token for regcred.dev", node, audience(nodecreds.DefaultAudience), true},
		{"a node requests a token for another audience", node, audience("sts.amazonaws.com"), false},
		{"regcred requests a token for regcred.dev", manager, audience(nodecreds.DefaultAudience), false},
		{"regcred gets a Pod", manager, &authorizationv1.ResourceAttributes{Namespace: "team-a", Verb: "get", Resource: "pods", Name: "web-0"}, true},
		{"regcred lists Pods", manager, &authorizationv1.ResourceAttributes{Namespace: "team-a", Verb: "list", Resource: "pods"}, false},
		{"regcred creates a token review", manager, &authorizationv1.ResourceAttributes{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"}, true},
		{"regcred updates its ConfigMap", manager, &authorizationv1.ResourceAttributes{Namespace: "regcred-system", Verb: "update", Resource: "configmaps", Name: nodecreds.ConfigMapName}, true},
		{"regcred creates a ConfigMap", manager, &authorizationv1.ResourceAttributes{Namespace: "regcred-system", Verb: "create", Resource: "configmaps"}, true},
		{"regcred updates another ConfigMap", manager, &authorizationv1.ResourceAttributes{Namespace: "regcred-system", Verb: "update", Resource: "configmaps", Name: "other"}, false},
		{"regcred creates a ConfigMap elsewhere", manager, &authorizationv1.ResourceAttributes{Namespace: "team-a", Verb: "create", Resource: "configmaps"}, false},
	}
	// The allowed ones first: once they pass, RBAC has seen the bindings
	// and a denial means something.
	for _, pass := range []bool{true, false} {
		for _, tc := range cases {
			if tc.allow != pass {
				continue
			}
			spec := tc.who
			spec.ResourceAttributes = tc.attrs
			allowed := func(ctx context.Context) (bool, error) {
				sar := &authorizationv1.SubjectAccessReview{Spec: spec}
				if err := cp.Client.Create(ctx, sar); err != nil {
					return false, err
				}
				return sar.Status.Allowed, nil
			}
			if tc.allow {
				// RBAC may take a moment to see new bindings.
				testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
					if ok, err := allowed(ctx); err != nil || !ok {
						return fmt.Errorf("%s: not allowed (%v)", tc.what, err)
					}
					return nil
				})
				continue
			}
			if ok, err := allowed(ctx); err != nil || ok {
				t.Errorf("%s: allowed %v (%v), want denied", tc.what, ok, err)
			}
		}
	}
}
