package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/kubeletmsg"
	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testcluster"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// The package's kubelet starts with regcred's credential provider
// configured as `regcred kubelet-config` prints it, for one registry,
// nodeCreds.reg (a kubelet reads its provider configuration only at
// start, and a port must match exactly). The plugin is this test binary
// under the plugin's name: TestMain makes it regcred's CLI. The tests write
// the node's configuration directory the way the chart's node agent does:
// the broker's address, and the CA the manager publishes.
var nodeCreds struct {
	reg               *testregistry.Registry
	binDir, configDir string
	server            string
}

// rotatorUser is the node registry's user whose password a test rotates.
const rotatorUser = "rotator"

// brokerOptions: answers cached for 5 seconds so rotation is seen fast;
// counts flushed to status every second.
var brokerOptions = nodecreds.Options{CacheDuration: 5 * time.Second, FlushInterval: time.Second}

func setupNodeCredentials() ([]testcluster.Option, error) {
	reg, err := testregistry.Start(testregistry.Token, testregistry.WithUser(testregistry.User{Name: rotatorUser, Password: "first-" + fmt.Sprint(time.Now().UnixNano())}))
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "regcred-e2e-node-")
	if err != nil {
		reg.Close()
		return nil, err
	}
	suite.OnStop(func() {
		reg.Close()
		_ = os.RemoveAll(dir)
	})
	nodeCreds.reg = reg
	// The plugin is this binary (TestMain makes it regcred's CLI).
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	exe, err := os.ReadFile(self)
	if err != nil {
		return nil, err
	}
	p, opt, err := testcluster.NewProvider(dir, exe, reg.Host)
	if err != nil {
		return nil, err
	}
	nodeCreds.binDir, nodeCreds.configDir = p.BinDir, p.ConfigDir
	return []testcluster.Option{opt}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// configureNode does what the chart does beside the manager: lets nodes
// request tokens for the broker's audience, and writes the node's
// configuration directory from the ConfigMap the manager publishes.
func configureNode(cl *testcluster.Cluster, server string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "regcred-e2e-node-audience"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{nodecreds.DefaultAudience}, Verbs: []string{"request-serviceaccounts-token-audience"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "regcred-e2e-node-audience"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"}}}
	for _, o := range []client.Object{role, binding} {
		if err := cl.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	var cm corev1.ConfigMap
	for {
		err := cl.Client.Get(ctx, client.ObjectKey{Namespace: regcredNS, Name: nodecreds.ConfigMapName}, &cm)
		if err == nil && cm.Data[nodecreds.CAFile] != "" {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the manager did not publish ConfigMap %s: %v", nodecreds.ConfigMapName, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	nodeCreds.server = server
	if err := os.WriteFile(filepath.Join(nodeCreds.configDir, nodecreds.CAFile), []byte(cm.Data[nodecreds.CAFile]), 0o644); err != nil {
		return err
	}
	return writeServer(server)
}

func writeServer(server string) error {
	return os.WriteFile(filepath.Join(nodeCreds.configDir, nodecreds.ServerFile), []byte(server+"\n"), 0o644)
}

// nodeRegistry is the registry the node's regcred provider matches, with
// the test image pushed as repo:1 (a repository per test: the kubelet
// records per image who may use it).
func (e env) nodeRegistry(t *testing.T, repo string) *testregistry.Registry {
	t.Helper()
	reg := nodeCreds.reg
	if err := e.TrustRegistry(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PushTestImage(bg, repo+":1"); err != nil {
		t.Fatal(err)
	}
	return reg
}

func nodeDelivery(c *v1alpha1.ClusterRegistryCredential) { c.Spec.Delivery = v1alpha1.DeliveryNode }

// refusedByRegistry reports whether a pull failure's Events hold the
// registry's refusal of an anonymous pull (a 401, or a token registry's
// insufficient_scope), as the kubelet reports it.
func refusedByRegistry(events string) bool {
	for _, line := range strings.Split(events, "\n") {
		if strings.HasPrefix(line, kubeletmsg.EventFailed+": ") && kubeletmsg.Classify(line) == kubeletmsg.Unauthorized {
			return true
		}
	}
	return false
}

// noPullSecrets checks that nothing in ns carries a registry login: no
// Secret of a docker type but the sources named, nothing on its
// ServiceAccounts or the Pods.
func (e env) noPullSecrets(t *testing.T, ns string, sources ...string) {
	t.Helper()
	var secrets corev1.SecretList
	if err := e.c.List(bg, &secrets, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if slices.Contains(sources, s.Name) {
			continue
		}
		if s.Type == corev1.SecretTypeDockerConfigJson || s.Type == corev1.SecretTypeDockercfg || s.Labels[credential.LabelManaged] != "" {
			t.Errorf("Secret %s/%s (%s) exists: delivery Node writes none", ns, s.Name, s.Type)
		}
	}
	var sas corev1.ServiceAccountList
	if err := e.c.List(bg, &sas, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, sa := range sas.Items {
		if len(sa.ImagePullSecrets) > 0 {
			t.Errorf("ServiceAccount %s/%s lists imagePullSecrets %v", ns, sa.Name, sa.ImagePullSecrets)
		}
	}
	var pods corev1.PodList
	if err := e.c.List(bg, &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if len(p.Spec.ImagePullSecrets) > 0 {
			t.Errorf("Pod %s/%s has imagePullSecrets %v", ns, p.Name, p.Spec.ImagePullSecrets)
		}
	}
}

// TestNodeDeliveryBrandNewNamespace: a ClusterRegistryCredential with
// delivery Node. A namespace is created and at once a Deployment in it:
// its Pod runs, pulled with what the kubelet got from regcred's broker,
// with no Secret in the namespace, no imagePullSecrets on the Pod or its
// ServiceAccount. A namespace the credential does not select gets the
// registry's 401, and leaves nothing in the credential's status.
func TestNodeDeliveryBrandNewNamespace(t *testing.T) {
	e := withRegcred(t)
	reg := e.nodeRegistry(t, "node-fanout")
	e.sourceSecret(t, regcredNS, "node-fanout-robot", reg)
	cred := e.clusterCredential(t, "node-fanout", "node-fanout-robot", labels("e2e", "node-fanout"), []string{reg.Host}, nodeDelivery)

	// Beside it, the same with delivery Secrets, for a registry the node's
	// provider does not match: time from creating a namespace and at once
	// a Deployment in it to its Pod Running, three of each.
	secretsReg := e.registry(t, testregistry.Basic)
	e.sourceSecret(t, regcredNS, "secrets-fanout-robot", secretsReg)
	e.clusterCredential(t, "secrets-fanout", "secrets-fanout-robot", labels("e2e", "secrets-fanout"), []string{secretsReg.Host}, nil)
	var ns string
	took := map[string][]time.Duration{}
	for i := 0; i < 3; i++ {
		ns = e.namespace(t, "node-fanout", labels("e2e", "node-fanout"))
		took["Node"] = append(took["Node"], e.deploymentRunning(t, ns, reg.Ref("node-fanout:1")))
		e.noPullSecrets(t, ns)
		other := e.namespace(t, "secrets-fanout", labels("e2e", "secrets-fanout"))
		took["Secrets"] = append(took["Secrets"], e.deploymentRunning(t, other, secretsReg.Ref("app:1")))
	}
	t.Logf("measured: a brand-new namespace's Deployment Running after create: delivery Node %v, delivery Secrets %v", took["Node"], took["Secrets"])
	e.waitReason(t, cred, v1alpha1.ReasonNodeDelivery)

	other := e.namespace(t, "node-unselected", nil)
	emptyBefore := brokerRequests(t, "empty")
	e.create(t, pod(other, "app", reg.Ref("node-fanout:1")))
	if events := e.waitPullFailure(t, other, "app"); !refusedByRegistry(events) {
		t.Errorf("the unselected namespace's pull failed without the registry's refusal:\n%s", events)
	}
	// The broker was asked and answered nothing.
	testenv.Eventually(t, time.Minute, func(context.Context) error {
		if n := brokerRequests(t, "empty"); n <= emptyBefore {
			return fmt.Errorf("%v empty answers, %v before the unselected namespace's Pod", n, emptyBefore)
		}
		return nil
	})
	// A namespace the credential does not select writes nothing into its
	// status (a tenant must not write there).
	e.waitDelivery(t, cred, func(d *v1alpha1.DeliveryStatus) error {
		if d.Served == 0 || len(d.Nodes) == 0 || d.Nodes[0].Name != e.NodeName {
			return fmt.Errorf("served %d, nodes %v", d.Served, d.Nodes)
		}
		if d.Refused != 0 || strings.Contains(d.LastRefusal, other) {
			return fmt.Errorf("refused %d: %q", d.Refused, d.LastRefusal)
		}
		return nil
	})
}

// brokerRequests is the in-process broker's regcred_node_credential_requests_total
// for result.
func brokerRequests(t *testing.T, result string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "regcred_node_credential_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestNodeDeliveryServiceAccountSelector: a tenant's RegistryCredential
// with delivery Node for the ServiceAccounts labelled pull=yes. Its
// selected ServiceAccount's Pod runs. A Pod of another ServiceAccount on
// the same node, IfNotPresent, for the image the node already has, is
// refused: the kubelet asks the plugin again for that ServiceAccount
// (KEP-2535), gets nothing, and the registry says 401.
func TestNodeDeliveryServiceAccountSelector(t *testing.T) {
	e := withRegcred(t)
	reg := e.nodeRegistry(t, "node-tenant")
	ns := e.namespace(t, "node-tenant", nil)
	for _, sa := range []*corev1.ServiceAccount{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "puller", Labels: labels("pull", "yes")}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other"}},
	} {
		e.create(t, sa)
	}
	e.sourceSecret(t, ns, "robot", reg)
	rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "node-tenant"}}
	rc.Spec.Registries = []string{reg.Host}
	rc.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "robot"}
	rc.Spec.Delivery = v1alpha1.DeliveryNode
	rc.Spec.ServiceAccounts = v1alpha1.ServiceAccountSelection{Mode: v1alpha1.ServiceAccountsSelector,
		Selector: &metav1.LabelSelector{MatchLabels: labels("pull", "yes")}}
	e.create(t, rc)
	t.Cleanup(func() { e.deleteAndWait(t, rc) })
	e.waitReason(t, rc, v1alpha1.ReasonNodeDelivery)

	selected := pod(ns, "selected", reg.Ref("node-tenant:1"))
	selected.Spec.ServiceAccountName = "puller"
	e.create(t, selected)
	e.waitRunning(t, ns, "selected")

	refused := pod(ns, "refused", reg.Ref("node-tenant:1"))
	refused.Spec.ServiceAccountName = "other"
	refused.Spec.Containers[0].ImagePullPolicy = corev1.PullIfNotPresent
	e.create(t, refused)
	if events := e.waitPullFailure(t, ns, "refused"); !refusedByRegistry(events) {
		t.Errorf("the other ServiceAccount's Pod failed without the registry's refusal:\n%s", events)
	}
	e.noPullSecrets(t, ns, "robot")
	e.waitDelivery(t, rc, func(d *v1alpha1.DeliveryStatus) error {
		if d.Served == 0 || d.Refused == 0 || !strings.Contains(d.LastRefusal, "ServiceAccount "+ns+"/other is not selected") {
			return fmt.Errorf("served %d refused %d: %q", d.Served, d.Refused, d.LastRefusal)
		}
		return nil
	})
}

// TestNodeDeliveryRotation: the source's password changes (and the old
// one stops working at the registry); a new Pod pulls with the new one,
// and no Secret is written at the rotation.
func TestNodeDeliveryRotation(t *testing.T) {
	e := withRegcred(t)
	reg := e.nodeRegistry(t, "node-rotate")
	user, ok := reg.UserNamed(rotatorUser)
	if !ok {
		t.Fatalf("the node registry has no user %s", rotatorUser)
	}
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNS, Name: "node-rotate-robot"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: testenv.DockerConfigJSON(t, reg.Host, user.Name, user.Password)}}
	e.create(t, src)
	t.Cleanup(func() { _ = e.c.Delete(bg, src) })
	cred := e.clusterCredential(t, "node-rotate", src.Name, labels("e2e", "node-rotate"), []string{reg.Host}, nodeDelivery)
	ns := e.namespace(t, "node-rotate", labels("e2e", "node-rotate"))
	e.waitReason(t, cred, v1alpha1.ReasonNodeDelivery)
	e.create(t, pod(ns, "before", reg.Ref("node-rotate:1")))
	e.waitRunning(t, ns, "before")

	rotated := "second-" + fmt.Sprint(time.Now().UnixNano())
	if err := reg.SetPassword(rotatorUser, rotated); err != nil {
		t.Fatal(err)
	}
	src.Data[corev1.DockerConfigJsonKey] = testenv.DockerConfigJSON(t, reg.Host, rotatorUser, rotated)
	if err := e.c.Update(bg, src); err != nil {
		t.Fatal(err)
	}
	rotatedAt := time.Now()
	e.create(t, pod(ns, "after", reg.Ref("node-rotate:1")))
	e.waitRunning(t, ns, "after")
	t.Logf("a Pod pulled with the rotated password %s after the rotation (answers cached %s)", time.Since(rotatedAt).Round(10*time.Millisecond), brokerOptions.CacheDuration)
	e.noPullSecrets(t, ns)
	if n := e.managedSecretsOf(t, "ClusterRegistryCredential/node-rotate"); n != 0 {
		t.Errorf("%d managed Secrets of the credential exist", n)
	}
}

// TestNodeDeliveryECR: an ECR source from the fake AWS, delivered by the
// broker: the Pod runs, the token is in the status, and no Secret is ever
// written for it.
func TestNodeDeliveryECR(t *testing.T) {
	e := withRegcred(t)
	reg := e.nodeRegistry(t, "node-ecr")
	aws, source, id := e.fakeECR(t, reg, "e2e-node-aws-keys")
	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "e2e-node-ecr"}}
	cred.Spec.Registries = []string{reg.Host}
	cred.Spec.Delivery = v1alpha1.DeliveryNode
	cred.Spec.Source.ECR = source
	cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: labels("e2e", "node-ecr")}
	e.create(t, cred)
	t.Cleanup(func() { e.deleteAndWait(t, cred) })
	ns := e.namespace(t, "node-ecr", labels("e2e", "node-ecr"))
	e.waitReason(t, cred, v1alpha1.ReasonNodeDelivery)
	e.create(t, pod(ns, "app", reg.Ref("node-ecr:1")))
	e.waitRunning(t, ns, "app")
	if err := e.c.Get(bg, client.ObjectKeyFromObject(cred), cred); err != nil {
		t.Fatal(err)
	}
	if cred.Status.Token == nil || cred.Status.Token.ExpiresAt == nil {
		t.Errorf("status.token is %+v, want the ECR token's expiry", cred.Status.Token)
	}
	if aws.TokensForKey(id) == 0 {
		t.Error("the fake ECR issued no token")
	}
	e.noPullSecrets(t, ns)
	if n := e.managedSecretsOf(t, "ClusterRegistryCredential/e2e-node-ecr"); n != 0 {
		t.Errorf("%d managed Secrets of the ECR credential exist", n)
	}
}

// TestNodeBrokerRefusesTokens asks the broker directly, as the plugin
// does: a token the kubelet would mint for a running Pod gets the login;
// a token of another audience gets nothing; the same token replayed once
// its Pod is deleted gets nothing, though its TokenReview is cached; a
// Pod that mounts a token for the broker's audience itself gets nothing.
func TestNodeBrokerRefusesTokens(t *testing.T) {
	e := withRegcred(t)
	reg := e.nodeRegistry(t, "node-tokens")
	e.sourceSecret(t, regcredNS, "node-tokens-robot", reg)
	cred := e.clusterCredential(t, "node-tokens", "node-tokens-robot", labels("e2e", "node-tokens"), []string{reg.Host}, nodeDelivery)
	ns := e.namespace(t, "node-tokens", labels("e2e", "node-tokens"))
	e.waitReason(t, cred, v1alpha1.ReasonNodeDelivery)
	image := reg.Ref("node-tokens:1")
	e.create(t, pod(ns, "app", image))
	e.waitRunning(t, ns, "app")
	var running corev1.Pod
	if err := e.c.Get(bg, client.ObjectKey{Namespace: ns, Name: "app"}, &running); err != nil {
		t.Fatal(err)
	}

	token := e.podToken(t, &running, nodecreds.DefaultAudience)
	code, resp, body := askBroker(t, image, token)
	if code != http.StatusOK || resp == nil || len(resp.Auth) == 0 {
		t.Fatalf("a running Pod's token: HTTP %d %s, want the login", code, body)
	}
	for key, a := range resp.Auth {
		if a.Password != reg.User.Password || !strings.HasPrefix(key, reg.Host) {
			t.Errorf("answer under %q is not the registry user's login", key)
		}
	}
	if resp.CacheKeyType != credentialproviderv1.ImagePluginCacheKeyType {
		t.Errorf("cacheKeyType %s, want Image", resp.CacheKeyType)
	}

	other := e.podToken(t, &running, "e2e-other-audience")
	if code, _, body := askBroker(t, image, other); code != http.StatusUnauthorized || strings.Contains(body, reg.User.Password) {
		t.Errorf("another audience's token: HTTP %d %s, want 401", code, body)
	}

	e.deleteAndWait(t, &running)
	if code, _, body := askBroker(t, image, token); code < 400 || strings.Contains(body, reg.User.Password) {
		t.Errorf("the deleted Pod's token replayed: HTTP %d %s, want a refusal", code, body)
	} else if code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("the deleted Pod's token replayed: HTTP %d %s, want 401 or 403", code, body)
	}

	mounts := pod(ns, "mounts", image)
	mounts.Spec.Volumes = []corev1.Volume{{Name: "broker-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: nodecreds.DefaultAudience, Path: "token"}}}}}}}
	e.create(t, mounts)
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(mounts), mounts); err != nil {
			return err
		}
		if mounts.Spec.NodeName == "" {
			return fmt.Errorf("pod %s not scheduled", mounts.Name)
		}
		return nil
	})
	if code, _, body := askBroker(t, image, e.podToken(t, mounts, nodecreds.DefaultAudience)); code != http.StatusForbidden || !strings.Contains(body, "mounts a ServiceAccount token") {
		t.Errorf("a Pod mounting a token for the broker's audience: HTTP %d %s, want 403", code, body)
	}
}

// TestNodeBrokerDown: the node's plugin cannot reach the broker. The
// kubelet pulls without the credential and reports the registry's 401,
// logs the plugin's one-line reason, and the doctor names the cause.
func TestNodeBrokerDown(t *testing.T) {
	e := withRegcred(t)
	reg := e.nodeRegistry(t, "node-down")
	e.sourceSecret(t, regcredNS, "node-down-robot", reg)
	cred := e.clusterCredential(t, "node-down", "node-down-robot", labels("e2e", "node-down"), []string{reg.Host}, nodeDelivery)
	closed, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	down := fmt.Sprintf("https://127.0.0.1:%d", closed)
	if err := writeServer(down); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := writeServer(nodeCreds.server); err != nil {
			t.Error(err)
		}
	})
	ns := e.namespace(t, "node-down", labels("e2e", "node-down"))
	e.waitReason(t, cred, v1alpha1.ReasonNodeDelivery)
	e.create(t, pod(ns, "app", reg.Ref("node-down:1")))
	if events := e.waitPullFailure(t, ns, "app"); !refusedByRegistry(events) {
		t.Errorf("the pull failed without the registry's refusal:\n%s", events)
	}
	testenv.Eventually(t, time.Minute, func(context.Context) error {
		if log := e.Log("kubelet", 400); !strings.Contains(log, "regcred broker at "+down) {
			return fmt.Errorf("the kubelet's log has no line from the plugin about %s", down)
		}
		return nil
	})
	out, _ := e.runDoctor(t, "-n", ns)
	for _, want := range []string{"node-down", e.NodeName, "broker"} {
		if !strings.Contains(out, want) {
			t.Errorf("the doctor does not name %q:\n%s", want, out)
		}
	}
}

// deploymentRunning creates a Deployment of image in ns and returns how
// long its Pod took to run.
func (e env) deploymentRunning(t *testing.T, ns, image string) time.Duration {
	t.Helper()
	start := time.Now()
	e.create(t, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels("app", "web")},
		Template: podTemplate("web", image, corev1.RestartPolicyAlways)}})
	e.waitPodOf(t, ns, "web")
	return time.Since(start).Round(10 * time.Millisecond)
}

// waitReason waits until a credential's Ready condition has reason.
func (e env) waitReason(t *testing.T, obj client.Object, reason string) {
	t.Helper()
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		c, err := credential.From(obj)
		if err != nil {
			return err
		}
		for _, cond := range c.Status.Conditions {
			if cond.Type == v1alpha1.ConditionReady && cond.Reason == reason && cond.ObservedGeneration == obj.GetGeneration() {
				return nil
			}
		}
		return fmt.Errorf("%s: Ready is not %s: %v", obj.GetName(), reason, c.Status.Conditions)
	})
}

// waitDelivery waits until a credential's status.delivery passes check.
func (e env) waitDelivery(t *testing.T, obj client.Object, check func(*v1alpha1.DeliveryStatus) error) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		c, err := credential.From(obj)
		if err != nil {
			return err
		}
		if c.Status.Delivery == nil {
			return fmt.Errorf("no status.delivery")
		}
		return check(c.Status.Delivery)
	})
}

// managedSecretsOf counts the Secrets anywhere that regcred rendered from
// the credential (annotation value kind/name).
func (e env) managedSecretsOf(t *testing.T, annotation string) int {
	t.Helper()
	var list corev1.SecretList
	if err := e.c.List(bg, &list, client.MatchingLabels{credential.LabelManaged: "true"}); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range list.Items {
		if s.Annotations[credential.AnnotationCredential] == annotation {
			n++
		}
	}
	return n
}

// podToken mints what the kubelet mints for its provider: a token of the
// Pod's ServiceAccount for audience, bound to the Pod.
func (e env) podToken(t *testing.T, p *corev1.Pod, audience string) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := cs.CoreV1().ServiceAccounts(p.Namespace).CreateToken(bg, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](600),
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// askBroker posts a CredentialProviderRequest to the broker as the plugin
// does, trusting the CA the manager published.
func askBroker(t *testing.T, image, token string) (int, *credentialproviderv1.CredentialProviderResponse, string) {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(nodeCreds.configDir, nodecreds.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("the published CA does not parse")
	}
	req := credentialproviderv1.CredentialProviderRequest{TypeMeta: metav1.TypeMeta{APIVersion: credentialproviderv1.SchemeGroupVersion.String(), Kind: "CredentialProviderRequest"},
		Image: image, ServiceAccountToken: token}
	body, _ := json.Marshal(req)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := hc.Post(nodeCreds.server+nodecreds.Path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, nodecreds.MaxBody))
	text := string(data)
	if strings.Contains(text, token) {
		t.Errorf("the broker's answer holds the token")
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, text
	}
	var out credentialproviderv1.CredentialProviderResponse
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("the broker's answer does not parse: %v", err)
	}
	return resp.StatusCode, &out, "(the answer)"
}
