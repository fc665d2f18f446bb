package doctor

import (
	"regcred.dev/regcred/internal/kubeletmsg"
	"regcred.dev/regcred/internal/registry"
)

// APIVersion names the schema of the JSON report. Fields may be added;
// none is renamed or removed without a new version.
const APIVersion = "regcred.dev/doctor/v1"

// Report is the doctor's answer: the stable JSON schema of
// `regcred doctor -o json`.
type Report struct {
	APIVersion  string    `json:"apiVersion"`
	Scope       string    `json:"scope"`
	PodsChecked int       `json:"podsChecked"`
	PodsFailing int       `json:"podsFailing"`
	Findings    []Finding `json:"findings"`
	Notes       []string  `json:"notes,omitempty"`
}

// Finding is one image of one Pod that the kubelet fails to pull.
type Finding struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	// Workload is what made the Pod, "deployment/web", or "".
	Workload string `json:"workload,omitempty"`
	// Kind is container, initContainer, ephemeralContainer or imageVolume;
	// Name is the container's or the volume's name.
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Image string `json:"image"`
	// Waiting is the container's waiting reason (ErrImagePull,
	// ImagePullBackOff, ...), "" when only an Event tells.
	Waiting string `json:"waiting,omitempty"`
	// KubeletMessage is what the kubelet last said about the pull.
	KubeletMessage string           `json:"kubeletMessage,omitempty"`
	Cause          kubeletmsg.Cause `json:"cause"`
	// Diagnosis is why, as a stable code (see the Diagnosis constants).
	Diagnosis   Diagnosis `json:"diagnosis"`
	Explanation string    `json:"explanation"`
	// Fix is a command a person can run (a comment says what to do when
	// no single command does it).
	Fix string `json:"fix"`
	// Credentials are regcred's credentials that cover the image.
	Credentials []CredentialState `json:"credentials"`
	// PullSecrets are the Pod's imagePullSecrets and what became of each.
	PullSecrets []PullSecretState `json:"pullSecrets"`
	// Check is the registry's answer to each candidate (--check).
	Check *registry.TryResult `json:"check,omitempty"`
}

// CredentialState is a credential that covers a failing image.
type CredentialState struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Secret    string `json:"secret"`
	Ready     string `json:"ready"`
	Reason    string `json:"reason,omitempty"`
	// InPod: the Pod lists the credential's Secret.
	InPod bool `json:"inPod"`
	// Delivery is spec.delivery when the broker serves the credential to
	// kubelets (Node, Both); a Node credential has no Secret.
	Delivery string `json:"delivery,omitempty"`
	// TokenExpiresAt is the expiry of a cloud token, RFC 3339.
	TokenExpiresAt string `json:"tokenExpiresAt,omitempty"`
}

// PullSecretState is one entry of the Pod's imagePullSecrets.
type PullSecretState struct {
	Name string `json:"name"`
	// State is ok, missing, malformed, ignored or unknown (unreadable).
	State string `json:"state"`
	// Credential is the regcred credential that wrote it, if any.
	Credential string `json:"credential,omitempty"`
	// Covers: the kubelet would try it for this image.
	Covers bool `json:"covers"`
}

// Diagnosis says why a pull failed, beyond what the registry said.
type Diagnosis string

// The diagnoses.
const (
	DiagInvalidImageName      Diagnosis = "InvalidImageName"
	DiagNeverPull             Diagnosis = "NeverPull"
	DiagMalformedSecret       Diagnosis = "MalformedSecret"
	DiagMissingSecret         Diagnosis = "MissingSecret"
	DiagNetwork               Diagnosis = "RegistryUnreachable"
	DiagRateLimited           Diagnosis = "RateLimited"
	DiagImageNotFound         Diagnosis = "ImageNotFound"
	DiagCredentialRejected    Diagnosis = "CredentialRejected"
	DiagTokenExpired          Diagnosis = "TokenExpired"
	DiagSourceInvalid         Diagnosis = "SourceInvalid"
	DiagNoCredential          Diagnosis = "NoCredential"
	DiagNamespaceExcluded     Diagnosis = "NamespaceExcluded"
	DiagNamespaceNotSelected  Diagnosis = "NamespaceNotSelected"
	DiagSecretMissing         Diagnosis = "SecretNotSynced"
	DiagSecretForeign         Diagnosis = "SecretForeign"
	DiagPodPredatesCredential Diagnosis = "PodPredatesCredential"
	DiagServiceAccountLater   Diagnosis = "ServiceAccountPatchedLater"
	DiagInjectionDisabled     Diagnosis = "InjectionDisabled"
	DiagInjectionOptedOut     Diagnosis = "InjectionOptedOut"
	DiagWebhookNotRegistered  Diagnosis = "WebhookNotRegistered"
	DiagWebhookNotCalled      Diagnosis = "WebhookNotCalled"
	DiagUnknown               Diagnosis = "Unknown"
	// The diagnoses of a credential delivered to nodes (spec.delivery
	// Node): the broker refuses the Pod's ServiceAccount; the kubelet did
	// not ask the broker, or got no answer; the manager does not serve
	// the broker at all.
	DiagServiceAccountNotSelected Diagnosis = "ServiceAccountNotSelected"
	DiagBrokerNotAsked            Diagnosis = "BrokerNotAsked"
	DiagNodeCredentialsOff        Diagnosis = "NodeCredentialsNotServed"
)

// conclude records the diagnosis, its explanation and the fix.
func (f *Finding) conclude(d Diagnosis, explanation, fix string) {
	f.Diagnosis, f.Explanation, f.Fix = d, explanation, fix
}
