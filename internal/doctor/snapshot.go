package doctor

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"regcred.dev/regcred/internal/credential"
)

// Snapshot is everything the doctor reads. Maps hold what exists; a key
// that is absent was looked for and not found.
type Snapshot struct {
	Now              time.Time
	RegcredNamespace string
	// RegcredInstalled: regcred's CRDs are served.
	RegcredInstalled bool
	// SecretsReadable: the caller may read Secrets. When false, Secrets
	// are neither missing nor present: the doctor says it cannot tell.
	SecretsReadable bool
	Pods            []*corev1.Pod
	// Events are the Warning Events about each Pod, by its UID.
	Events          map[types.UID][]corev1.Event
	Namespaces      map[string]*corev1.Namespace
	ServiceAccounts map[string]*corev1.ServiceAccount // namespace/name
	Secrets         map[string]*corev1.Secret         // namespace/name
	Credentials     []*credential.Credential
	// Webhook is regcred's Pod webhook as registered; nil when it is not.
	Webhook *Webhook
	// NodeCredentials says whether regcred's manager serves the kubelet
	// credential broker (it publishes its ConfigMap when it does); read
	// only when a credential delivers to nodes.
	NodeCredentials BrokerState
	// Workloads name the workload that made a Pod ("deployment/web"), by
	// the UID of the Pod's controller.
	Workloads map[types.UID]string
	// Notes are things the collector could not read.
	Notes []string
}

// Webhook is what the doctor needs of regcred's webhook registration.
type Webhook struct {
	Configuration string
	FailurePolicy string
}

// BrokerState is whether the manager serves node credentials, as the
// ConfigMap nodecreds.ConfigMapName in regcred's namespace tells.
type BrokerState string

// The states; the zero value is unknown (not read, or not readable).
const (
	BrokerUnknown   BrokerState = ""
	BrokerPublished BrokerState = "Published"
	BrokerAbsent    BrokerState = "Absent"
)

// WebhookName is the name of regcred's Pod webhook inside its
// MutatingWebhookConfiguration.
const WebhookName = "pods.regcred.dev"

// Target is what to diagnose: the whole cluster (zero value), a
// namespace, a Pod, or a workload's Pods.
type Target struct {
	Namespace string
	// Kind is "", "pod", "deployment", "statefulset", "daemonset",
	// "replicaset" or "job"; Name goes with it.
	Kind string
	Name string
}

// String is how a report names its scope.
func (t Target) String() string {
	switch {
	case t.Kind != "":
		return fmt.Sprintf("%s/%s in namespace %s", t.Kind, t.Name, t.Namespace)
	case t.Namespace != "":
		return "namespace " + t.Namespace
	default:
		return "cluster"
	}
}

// ErrNotFound is returned when the target does not exist.
type ErrNotFound struct{ What string }

func (e *ErrNotFound) Error() string { return e.What + " not found" }
