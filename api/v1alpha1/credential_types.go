package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CredentialSpec is what both credential kinds have in common.
type CredentialSpec struct {
	// Registries are the registry keys this credential is for, matched
	// against images exactly as the kubelet does: a host
	// ("harbor.example.com"), host:port, or host/path prefix, with "*" globs
	// allowed per host label ("*.mirror.example.com:5000/team"). Docker Hub
	// is "docker.io" or "index.docker.io".
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.all(r, r.matches('^(https?://)?(\\\\[[0-9a-fA-F:]+\\\\]|[a-zA-Z0-9*]([a-zA-Z0-9*-]*[a-zA-Z0-9*])?(\\\\.[a-zA-Z0-9*]([a-zA-Z0-9*-]*[a-zA-Z0-9*])?)*)(:[0-9]{1,5})?(/[a-zA-Z0-9._/-]*)?$'))",message="each registry must be a host, host:port or host/path prefix, optionally with * globs in host labels, like harbor.example.com, *.mirror.example.com:5000/team or docker.io"
	// +listType=set
	Registries []string `json:"registries"`

	// Source is where the credential comes from. Exactly one source must be
	// set.
	Source CredentialSource `json:"source"`

	// SecretName is the name of the kubernetes.io/dockerconfigjson Secret
	// regcred maintains in each selected namespace. Default: "regcred-"
	// followed by the credential's name.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="secretName must be a valid Secret name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
	SecretName string `json:"secretName,omitempty"`

	// ServiceAccounts selects the ServiceAccounts whose imagePullSecrets get
	// the Secret. Default: every ServiceAccount of the namespace.
	// +optional
	// +kubebuilder:default={mode: All}
	ServiceAccounts ServiceAccountSelection `json:"serviceAccounts,omitempty"`

	// PodInjection controls whether the admission webhook adds the Secret
	// to Pods whose images match Registries.
	// +optional
	// +kubebuilder:default={enabled: true}
	PodInjection PodInjection `json:"podInjection,omitempty"`

	// Delivery is how the credential reaches the kubelet. Secrets (the
	// default): a pull Secret in each selected namespace, listed on the
	// selected ServiceAccounts and injected into matching Pods. Node: no
	// Secret anywhere; the kubelet's image credential provider asks
	// regcred's broker with the Pod's ServiceAccount token and gets the
	// credential only for the ServiceAccounts spec.serviceAccounts selects
	// (see `regcred kubelet-config`). Both: the two at once, for a
	// migration.
	// +optional
	// +kubebuilder:default=Secrets
	Delivery DeliveryMode `json:"delivery,omitempty"`

	// Verify probes the registry with the credential the way a pull starts
	// (token, then a manifest HEAD, which Docker Hub does not count as a
	// pull) and reports the answer in the Verified condition. Off when
	// unset.
	// +optional
	Verify *Verify `json:"verify,omitempty"`
}

// CredentialSource says where a credential comes from.
// +kubebuilder:validation:XValidation:rule="(has(self.secretRef) ? 1 : 0) + (has(self.ecr) ? 1 : 0) + (has(self.gcp) ? 1 : 0) + (has(self.acr) ? 1 : 0) + (has(self.credentialProvider) ? 1 : 0) == 1",message="exactly one source must be set: secretRef, ecr, gcp, acr or credentialProvider"
type CredentialSource struct {
	// SecretRef names a Secret of type kubernetes.io/dockerconfigjson,
	// kubernetes.io/dockercfg or kubernetes.io/basic-auth. For a
	// ClusterRegistryCredential it lives in regcred's own namespace, for a
	// RegistryCredential in the credential's namespace. A change to it
	// rotates every copy.
	// +optional
	SecretRef *SecretReference `json:"secretRef,omitempty"`

	// ECR gets an Amazon ECR (or ECR Public) authorization token. Tokens
	// last 12 hours and are refreshed well before they expire.
	// +optional
	ECR *ECRSource `json:"ecr,omitempty"`

	// GCP gets a Google OAuth2 access token for Artifact Registry and GCR
	// hosts (user name oauth2accesstoken).
	// +optional
	GCP *GCPSource `json:"gcp,omitempty"`

	// ACR exchanges a Microsoft Entra ID token for an Azure Container
	// Registry refresh token (user name 00000000-0000-0000-0000-000000000000).
	// +optional
	ACR *ACRSource `json:"acr,omitempty"`

	// CredentialProvider runs a kubelet image credential provider plugin
	// (the CredentialProviderRequest/Response exec API, v1) found in the
	// manager's file system, so the plugins nodes already use serve regcred
	// too.
	// +optional
	CredentialProvider *CredentialProviderSource `json:"credentialProvider,omitempty"`
}

// ECRSource configures Amazon ECR tokens.
// +kubebuilder:validation:XValidation:rule="(has(self.public) && self.public) || (has(self.region) && size(self.region) > 0)",message="region is required for private ECR"
// +kubebuilder:validation:XValidation:rule="!(has(self.public) && self.public && has(self.registryIds))",message="registryIds are for private ECR only"
type ECRSource struct {
	// Region of the registries, like eu-west-1. ECR Public always uses
	// us-east-1.
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-z]{2}(-[a-z]+)+-[0-9]+$`
	Region string `json:"region,omitempty"`
	// RegistryIDs are AWS account IDs of the registries. A token is per
	// region and serves every registry the identity may read, so this is
	// only needed for old-style per-registry requests.
	// +optional
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:Pattern=`^[0-9]{12}$`
	// +listType=set
	RegistryIDs []string `json:"registryIds,omitempty"`
	// Public gets a token for ECR Public (public.ecr.aws) instead.
	// +optional
	Public bool `json:"public,omitempty"`
	// Endpoint overrides the ECR API endpoint (a VPC endpoint, say):
	// https://host[:port].
	// +optional
	// +kubebuilder:validation:Pattern=`^https://[^/?#]+/?$`
	Endpoint string `json:"endpoint,omitempty"`
	// Identity is who asks for the token. Default: the manager's own.
	// +optional
	Identity CloudIdentity `json:"identity,omitempty"`
}

// GCPSource configures Google access tokens.
type GCPSource struct {
	// Identity is who asks for the token. Default: the manager's own
	// (Application Default Credentials: GKE Workload Identity or the
	// metadata server). A Secret holds a service account JSON key under
	// "key.json". A web identity needs spec.identity.webIdentity.audience
	// set to the workload identity pool provider
	// (//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER).
	// +optional
	Identity CloudIdentity `json:"identity,omitempty"`
	// TokenURL overrides Google's STS token endpoint for web identities
	// (https://sts.googleapis.com/v1/token).
	// +optional
	// +kubebuilder:validation:Pattern=`^https://[^?#]+$`
	TokenURL string `json:"tokenURL,omitempty"`
}

// ACRSource configures Azure Container Registry tokens.
type ACRSource struct {
	// Registry is the login server, like example.azurecr.io.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9.-]+(:[0-9]{1,5})?$`
	Registry string `json:"registry"`
	// TenantID is the Microsoft Entra tenant of the identity.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	TenantID string `json:"tenantID,omitempty"`
	// ClientID of the application or managed identity.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ClientID string `json:"clientID,omitempty"`
	// AuthorityHost overrides the Entra ID authority
	// (https://login.microsoftonline.com/), for sovereign clouds.
	// +optional
	// +kubebuilder:validation:Pattern=`^https://[^?#]+$`
	AuthorityHost string `json:"authorityHost,omitempty"`
	// Identity is who asks for the token. Default: the manager's own
	// (Azure workload identity or managed identity). A Secret holds an
	// application's client secret under "clientSecret".
	// +optional
	Identity CloudIdentity `json:"identity,omitempty"`
}

// CloudIdentity says whose cloud identity gets a token. With neither
// field set it is the manager's own ambient identity, found the way the
// cloud's SDK finds it.
// +kubebuilder:validation:XValidation:rule="!(has(self.secretRef) && has(self.webIdentity))",message="set secretRef or webIdentity, not both"
type CloudIdentity struct {
	// SecretRef names a Secret with long-lived keys, in regcred's
	// namespace for a ClusterRegistryCredential, else in the credential's.
	// Keys: AWS aws_access_key_id, aws_secret_access_key and optionally
	// aws_session_token; Google key.json; Azure clientSecret.
	// +optional
	SecretRef *SecretReference `json:"secretRef,omitempty"`
	// WebIdentity mints a token for a ServiceAccount with the TokenRequest
	// API and exchanges it by web-identity federation, so tenants never
	// share the manager's cloud identity.
	// +optional
	WebIdentity *WebIdentity `json:"webIdentity,omitempty"`
}

// WebIdentity is a ServiceAccount token exchanged for a cloud identity.
type WebIdentity struct {
	// ServiceAccountName is the ServiceAccount whose token is minted: in
	// regcred's namespace for a ClusterRegistryCredential, else in the
	// credential's. It must opt in with the annotation
	// regcred.dev/token-audiences listing Audience, and may not be the
	// manager's own.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ServiceAccountName string `json:"serviceAccountName"`
	// Audience of the ServiceAccount token: sts.amazonaws.com for AWS,
	// the workload identity provider for Google,
	// api://AzureADTokenExchange for Azure. Never one the API server
	// accepts.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Audience string `json:"audience"`
	// RoleARN is the AWS role to assume (AWS only).
	// +optional
	// +kubebuilder:validation:Pattern=`^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$`
	RoleARN string `json:"roleARN,omitempty"`
}

// CredentialProviderSource runs a kubelet credential provider plugin.
type CredentialProviderSource struct {
	// Command is the plugin's absolute path in the manager's container.
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:Pattern=`^/`
	Command string `json:"command"`
	// Args are passed to the plugin.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Args []string `json:"args,omitempty"`
	// Env is added to the manager's environment for the plugin.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Env []EnvVar `json:"env,omitempty"`
	// DefaultCacheDuration is how long a response is used when the plugin
	// gives no cacheDuration. Default: 10m.
	// +optional
	DefaultCacheDuration *metav1.Duration `json:"defaultCacheDuration,omitempty"`
	// Timeout stops a plugin that hangs. Default: 30s.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// EnvVar is an environment variable for a plugin.
type EnvVar struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name  string `json:"name"`
	Value string `json:"value"`
}

// SecretReference names a Secret in a namespace implied by context.
type SecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// DeliveryMode says how a credential reaches the kubelet.
// +kubebuilder:validation:Enum=Secrets;Node;Both
type DeliveryMode string

const (
	// DeliverySecrets copies the credential into a pull Secret per
	// namespace.
	DeliverySecrets DeliveryMode = "Secrets"
	// DeliveryNode serves it to kubelets through the credential provider
	// broker only, per ServiceAccount, with no Secret copy.
	DeliveryNode DeliveryMode = "Node"
	// DeliveryBoth does both.
	DeliveryBoth DeliveryMode = "Both"
)

// ToSecrets reports whether pull Secrets are written (the empty mode is
// the default, Secrets).
func (m DeliveryMode) ToSecrets() bool { return m != DeliveryNode }

// ToNodes reports whether the broker serves the credential to kubelets.
func (m DeliveryMode) ToNodes() bool { return m == DeliveryNode || m == DeliveryBoth }

// ServiceAccountMode says which ServiceAccounts get the pull Secret.
// +kubebuilder:validation:Enum=All;Default;Selector;None
type ServiceAccountMode string

const (
	// ServiceAccountsAll patches every ServiceAccount of the namespace.
	ServiceAccountsAll ServiceAccountMode = "All"
	// ServiceAccountsDefault patches only the ServiceAccount named "default".
	ServiceAccountsDefault ServiceAccountMode = "Default"
	// ServiceAccountsSelector patches the ServiceAccounts matching Selector.
	ServiceAccountsSelector ServiceAccountMode = "Selector"
	// ServiceAccountsNone patches no ServiceAccount.
	ServiceAccountsNone ServiceAccountMode = "None"
)

// ServiceAccountSelection selects ServiceAccounts.
// +kubebuilder:validation:XValidation:rule="self.mode == 'Selector' ? has(self.selector) : !has(self.selector)",message="selector is required when mode is Selector, and allowed only then"
type ServiceAccountSelection struct {
	// Mode is All, Default, Selector or None.
	// +kubebuilder:default=All
	// +optional
	Mode ServiceAccountMode `json:"mode,omitempty"`
	// Selector picks ServiceAccounts by label when Mode is Selector.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// Verify is what to probe and how often.
type Verify struct {
	// Image to probe: a reference to an image the credential should be
	// able to pull (host/repository:tag or @digest). Its registry must be
	// one of spec.registries.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image"`
	// Interval between probes, at least 1m (default 1h). Never more than
	// one probe per interval is made, whatever the number of replicas.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="verify.interval must be at least 1m"
	Interval metav1.Duration `json:"interval,omitempty"`
}

// PodInjection configures the admission webhook for a credential.
type PodInjection struct {
	// Enabled lets the webhook add the Secret to matching Pods. Default:
	// true.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
}

// CredentialStatus is the observed state of a credential.
type CredentialStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready says whether the Secret is in place and current in
	// every selected namespace.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Namespaces counts the selected namespaces and how they fare.
	// +optional
	Namespaces NamespaceCounts `json:"namespaces,omitempty"`
	// Failures lists namespaces where the Secret could not be synced (at
	// most 10; Namespaces.Failed has the full count).
	// +optional
	// +kubebuilder:validation:MaxItems=10
	Failures []NamespaceFailure `json:"failures,omitempty"`
	// SecretName is the name of the managed Secret.
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// SourceVersion is the resourceVersion of the source the synced copies
	// were rendered from.
	// +optional
	SourceVersion string `json:"sourceVersion,omitempty"`
	// Token describes the short-lived token of a cloud or plugin source.
	// +optional
	Token *TokenStatus `json:"token,omitempty"`
	// Verify records the last spec.verify probe.
	// +optional
	Verify *VerifyStatus `json:"verify,omitempty"`
	// Delivery is how the credential is delivered and, when the broker
	// serves it to kubelets, what it served and refused.
	// +optional
	Delivery *DeliveryStatus `json:"delivery,omitempty"`
}

// DeliveryStatus reports delivery to kubelets through the broker. The
// counts add up what every manager replica answered since the credential
// was created (replicas write them about every 30 seconds).
type DeliveryStatus struct {
	// Mode is the spec.delivery the status describes.
	// +optional
	Mode DeliveryMode `json:"mode,omitempty"`
	// Served counts kubelet requests answered with this credential.
	// +optional
	Served int64 `json:"served,omitempty"`
	// Refused counts kubelet requests for images this credential covers
	// that it did not answer: the Pod's namespace or ServiceAccount is
	// not selected.
	// +optional
	Refused int64 `json:"refused,omitempty"`
	// LastServedAt is when the broker last answered with it.
	// +optional
	LastServedAt *metav1.Time `json:"lastServedAt,omitempty"`
	// LastRefusedAt is when the broker last refused a request it covers.
	// +optional
	LastRefusedAt *metav1.Time `json:"lastRefusedAt,omitempty"`
	// LastRefusal says why, naming the namespace and ServiceAccount.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LastRefusal string `json:"lastRefusal,omitempty"`
	// Nodes are the nodes whose kubelets asked for images this credential
	// covers, most recent first (at most 32).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Nodes []NodeRequests `json:"nodes,omitempty"`
}

// NodeRequests is when a node's kubelet last asked.
type NodeRequests struct {
	Name          string      `json:"name"`
	LastRequestAt metav1.Time `json:"lastRequestAt"`
}

// VerifyStatus is when the registry was last probed and what it said of
// its rate limit.
type VerifyStatus struct {
	// ProbedAt is when the last probe ran.
	ProbedAt *metav1.Time `json:"probedAt,omitempty"`
	// NextProbeAt is when the next one is due.
	NextProbeAt *metav1.Time `json:"nextProbeAt,omitempty"`
	// Image is what was probed.
	Image string `json:"image,omitempty"`
	// RateLimitRemaining is the pulls left that the registry announced
	// (Docker Hub's ratelimit-remaining), when it did.
	// +optional
	RateLimitRemaining *int32 `json:"rateLimitRemaining,omitempty"`
}

// TokenStatus is when a short-lived token was got and when it stops
// working. Never the token itself.
type TokenStatus struct {
	// ExpiresAt is when the token in the Secrets stops working.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// RefreshedAt is when it was got.
	// +optional
	RefreshedAt *metav1.Time `json:"refreshedAt,omitempty"`
	// NextRefreshAt is when the next one will be asked for.
	// +optional
	NextRefreshAt *metav1.Time `json:"nextRefreshAt,omitempty"`
}

// NamespaceCounts counts namespaces.
type NamespaceCounts struct {
	// Desired is the number of namespaces the credential selects.
	// +optional
	Desired int32 `json:"desired,omitempty"`
	// Synced is the number of namespaces with a current Secret.
	// +optional
	Synced int32 `json:"synced,omitempty"`
	// Failed is the number of namespaces where syncing failed.
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// Summary is Synced/Desired, for kubectl get.
	// +optional
	Summary string `json:"summary,omitempty"`
}

// NamespaceFailure says why a namespace is not synced.
type NamespaceFailure struct {
	Namespace string `json:"namespace"`
	Message   string `json:"message"`
}

// Condition types and reasons.
const (
	ConditionReady = "Ready"

	// ReasonSynced: the Secret is in every selected namespace.
	ReasonSynced = "Synced"
	// ReasonProgressing: copies are being written.
	ReasonProgressing = "Progressing"
	// ReasonSyncFailed: some namespaces could not get their copy (a
	// foreign Secret holds the name, two credentials want one name, a
	// write was refused); status.failures says which and why.
	ReasonSyncFailed = "SyncFailed"
	// ReasonSourceNotFound: the source does not exist (yet).
	ReasonSourceNotFound = "SourceNotFound"
	// ReasonSourceInvalid: the source exists but cannot be used as it is.
	ReasonSourceInvalid = "SourceInvalid"
	// ReasonSourceUnavailable: the source could not be read right now.
	ReasonSourceUnavailable = "SourceUnavailable"
	// ReasonNodeDelivery: the credential is delivered to kubelets by the
	// credential broker only (spec.delivery Node); no Secret is written.
	ReasonNodeDelivery = "NodeDelivery"
	// ReasonNoNamespaces: the selector picks no namespace.
	ReasonNoNamespaces = "NoNamespaces"
	// ReasonDeleting: the copies are being removed.
	ReasonDeleting = "Deleting"

	// ReasonTokenRequestFailed: the cloud or plugin did not give a token.
	ReasonTokenRequestFailed = "TokenRequestFailed"
	// ReasonIdentityNotFound: the identity (keys Secret, ServiceAccount,
	// ambient credentials) does not exist.
	ReasonIdentityNotFound = "IdentityNotFound"
	// ReasonAccessDenied: the cloud refused the identity.
	ReasonAccessDenied = "AccessDenied"
	// ReasonThrottled: the cloud throttled token requests.
	ReasonThrottled = "Throttled"

	// ConditionVerified says whether the registry accepted the credential
	// at the last spec.verify probe. Its reason is the registry's answer:
	// OK, Unauthorized, Denied, NotFound, RateLimited, TLS, DNS,
	// Connection, Timeout, Blocked, Other, or NoCredential when the
	// credential has no entry for the probed image.
	ConditionVerified = "Verified"
	// ConditionPodInjection, with regcred manager --pod-injection=policy,
	// says whether the generated MutatingAdmissionPolicies carry the
	// credential: True, AdmissionPolicy; False, TooLargeForAdmissionPolicy
	// (more registry keys than a policy carries for one credential).
	ConditionPodInjection = "PodInjection"
	// ReasonAdmissionPolicy: the admission policies carry it.
	ReasonAdmissionPolicy = "AdmissionPolicy"
	// ReasonNoCredential: the credential has no entry for the image.
	ReasonNoCredential = "NoCredential"
	// ReasonBlocked: the probed registry (or a tenant's cloud endpoint)
	// resolves to a loopback, link-local or private address the manager
	// may not reach for a RegistryCredential
	// (--tenant-allow-private-networks lifts it).
	ReasonBlocked = "Blocked"
)

// ClusterRegistryCredentialSpec adds namespace selection to CredentialSpec.
type ClusterRegistryCredentialSpec struct {
	CredentialSpec `json:",inline"`

	// NamespaceSelector picks the namespaces to sync to. Default: every
	// namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// ExcludeNamespaces are never synced to. kube-system, kube-public,
	// kube-node-lease and regcred's own namespace are always excluded.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	ExcludeNamespaces []string `json:"excludeNamespaces,omitempty"`
}

// ClusterRegistryCredential is a registry credential fanned out to the
// namespaces its namespaceSelector picks. Its source Secret lives in
// regcred's own namespace.
//
// +kubebuilder:validation:XValidation:rule="!has(self.spec.delivery) || self.spec.delivery == 'Secrets' || !has(self.spec.serviceAccounts) || !has(self.spec.serviceAccounts.mode) || self.spec.serviceAccounts.mode != 'None'",message="spec.serviceAccounts.mode None selects no ServiceAccount, so delivery Node or Both would serve none: use All, Default or Selector"
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=crc,categories=regcred
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Synced",type=string,JSONPath=`.status.namespaces.summary`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.secretName`,priority=1
// +kubebuilder:printcolumn:name="Token Expires",type=string,JSONPath=`.status.token.expiresAt`,priority=1
// +kubebuilder:printcolumn:name="Verified",type=string,JSONPath=`.status.conditions[?(@.type=="Verified")].reason`,priority=1
// +kubebuilder:printcolumn:name="Delivery",type=string,JSONPath=`.spec.delivery`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterRegistryCredential struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterRegistryCredentialSpec `json:"spec"`
	Status CredentialStatus              `json:"status,omitempty"`
}

// ClusterRegistryCredentialList is a list of ClusterRegistryCredentials.
//
// +kubebuilder:object:root=true
type ClusterRegistryCredentialList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterRegistryCredential `json:"items"`
}

// RegistryCredential is a tenant's registry credential: it acts only in its
// own namespace and reads its source Secret from there. It may not act as
// regcred's manager: no plugin, no ambient cloud identity.
//
// +kubebuilder:validation:XValidation:rule="!has(self.spec.delivery) || self.spec.delivery == 'Secrets' || !has(self.spec.serviceAccounts) || !has(self.spec.serviceAccounts.mode) || self.spec.serviceAccounts.mode != 'None'",message="spec.serviceAccounts.mode None selects no ServiceAccount, so delivery Node or Both would serve none: use All, Default or Selector"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.source.credentialProvider)",message="a RegistryCredential cannot run a credential provider plugin (it would run as regcred's manager): use a ClusterRegistryCredential"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.source.ecr) || (has(self.spec.source.ecr.identity) && (has(self.spec.source.ecr.identity.secretRef) || has(self.spec.source.ecr.identity.webIdentity)))",message="a RegistryCredential cannot use the manager's own cloud identity: set spec.source.ecr.identity.webIdentity (a ServiceAccount of its namespace) or identity.secretRef"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.source.gcp) || (has(self.spec.source.gcp.identity) && (has(self.spec.source.gcp.identity.secretRef) || has(self.spec.source.gcp.identity.webIdentity)))",message="a RegistryCredential cannot use the manager's own cloud identity: set spec.source.gcp.identity.webIdentity (a ServiceAccount of its namespace) or identity.secretRef"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.source.acr) || (has(self.spec.source.acr.identity) && (has(self.spec.source.acr.identity.secretRef) || has(self.spec.source.acr.identity.webIdentity)))",message="a RegistryCredential cannot use the manager's own cloud identity: set spec.source.acr.identity.webIdentity (a ServiceAccount of its namespace) or identity.secretRef"
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rc,categories=regcred
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Synced",type=string,JSONPath=`.status.namespaces.summary`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.secretName`,priority=1
// +kubebuilder:printcolumn:name="Token Expires",type=string,JSONPath=`.status.token.expiresAt`,priority=1
// +kubebuilder:printcolumn:name="Verified",type=string,JSONPath=`.status.conditions[?(@.type=="Verified")].reason`,priority=1
// +kubebuilder:printcolumn:name="Delivery",type=string,JSONPath=`.spec.delivery`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RegistryCredential struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   CredentialSpec   `json:"spec"`
	Status CredentialStatus `json:"status,omitempty"`
}

// RegistryCredentialList is a list of RegistryCredentials.
//
// +kubebuilder:object:root=true
type RegistryCredentialList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RegistryCredential `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ClusterRegistryCredential{}, &ClusterRegistryCredentialList{}, &RegistryCredential{}, &RegistryCredentialList{})
}

// InjectionEnabled reports whether the webhook may add the Secret to Pods.
func (p PodInjection) InjectionEnabled() bool { return p.Enabled == nil || *p.Enabled }

// CloudIdentity is the identity of an ecr, gcp or acr source; nil for
// sources without one.
func (s *CredentialSource) CloudIdentity() *CloudIdentity {
	switch {
	case s.ECR != nil:
		return &s.ECR.Identity
	case s.GCP != nil:
		return &s.GCP.Identity
	case s.ACR != nil:
		return &s.ACR.Identity
	}
	return nil
}
