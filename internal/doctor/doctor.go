// Package doctor explains why the kubelet fails to pull a Pod's images. It
// reads what the kubelet said (the container's waiting state and its
// Events), classifies it, and correlates it with what regcred knows: the
// Pod's pull Secrets, its ServiceAccount, the credentials that cover the
// image and why none reached the Pod. Diagnose is a pure function of a
// Snapshot; Collect fills one from the API server.
package doctor

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/keyring"
)

// APIVersion names the schema of the JSON report. Fields may be added;
// none is renamed or removed without a new version.
const APIVersion = "regcred.dev/doctor/v1"

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
	KubeletMessage string `json:"kubeletMessage,omitempty"`
	Cause          Cause  `json:"cause"`
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
	Check *CheckResult `json:"check,omitempty"`
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
)

// Diagnose explains every failing pull of the snapshot's Pods.
func Diagnose(s *Snapshot, scope string) *Report {
	r := &Report{APIVersion: APIVersion, Scope: scope, Findings: []Finding{}, Notes: s.Notes}
	for _, pod := range s.Pods {
		r.PodsChecked++
		fs := diagnosePod(s, pod)
		if len(fs) > 0 {
			r.PodsFailing++
			r.Findings = append(r.Findings, fs...)
		}
	}
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod))
	})
	return r
}

// failing is one image the kubelet failed to pull for a Pod.
type failing struct {
	kind, name, image, waiting, message string
}

func diagnosePod(s *Snapshot, pod *corev1.Pod) []Finding {
	if !candidate(pod) || !pod.DeletionTimestamp.IsZero() {
		return nil
	}
	pc := newPodContext(s, pod)
	fails := failingImages(pod, s.Events[pod.UID], pc.badPull != nil)
	if len(fails) == 0 {
		return nil
	}
	var out []Finding
	for _, f := range fails {
		out = append(out, pc.diagnose(f))
	}
	return out
}

// notPullReasons are waiting reasons that are not about a pull.
var notPullReasons = []string{"", "ContainerCreating", "PodInitializing", "CrashLoopBackOff", "CreateContainerConfigError",
	"CreateContainerError", "RunContainerError", "PreStartHookError", "PostStartHookError", "ContainerStatusUnknown"}

// failingImages lists the images a Pod waits on because of a failed pull,
// each once, with the kubelet's latest word on it. When a pull Secret of the
// Pod is malformed (malformed), the kubelet's waiting reason is the parse
// error itself ("illegal base64 data at input byte 0"): any reason that is
// not known to be about something else counts.
func failingImages(pod *corev1.Pod, events []corev1.Event, malformed bool) []failing {
	kinds := map[string]string{}
	specImage := map[string]string{}
	for _, c := range pod.Spec.InitContainers {
		kinds[c.Name], specImage[c.Name] = "initContainer", c.Image
	}
	for _, c := range pod.Spec.Containers {
		kinds[c.Name], specImage[c.Name] = "container", c.Image
	}
	for _, c := range pod.Spec.EphemeralContainers {
		kinds[c.Name], specImage[c.Name] = "ephemeralContainer", c.Image
	}
	volumeOf := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.Image != nil {
			volumeOf[v.Image.Reference] = v.Name
		}
	}

	latest := latestPullMessages(events)
	var out []failing
	seen := map[string]bool{}
	statuses := slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses)
	for _, st := range statuses {
		w := st.State.Waiting
		if w == nil || !(slices.Contains(PullWaitingReasons, w.Reason) || (malformed && !slices.Contains(notPullReasons, w.Reason))) {
			continue
		}
		image := ImageOfMessage(w.Message)
		if image == "" {
			image = specImage[st.Name]
		}
		f := failing{kind: kinds[st.Name], name: st.Name, image: image, waiting: w.Reason, message: cmp.Or(w.Message, w.Reason)}
		if f.kind == "" {
			f.kind = "container"
		}
		if image != specImage[st.Name] {
			if vol, ok := volumeOf[image]; ok {
				f.kind, f.name = "imageVolume", vol
			}
		}
		if m, ok := latest[image]; ok {
			f.message = m
		}
		if key := f.kind + "/" + f.name; !seen[key] {
			seen[key] = true
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		// A Pod whose pull Secret is missing may still be creating its
		// sandbox; the Event is then the only word.
		for _, ev := range events {
			if ev.Reason == EventMissingSecret && pod.Status.Phase == corev1.PodPending {
				for name, img := range specImage {
					if kinds[name] == "container" && !seen[name] {
						seen[name] = true
						out = append(out, failing{kind: "container", name: name, image: img, message: ev.Message})
					}
				}
				slices.SortFunc(out, func(a, b failing) int { return cmp.Compare(a.name, b.name) })
				break
			}
		}
	}
	return out
}

// latestPullMessages maps an image to the message of the kubelet's latest
// "Failed to pull image" (or InspectFailed, ErrImageNeverPull) Event on it:
// the registry's own answer, which a back-off status only repeats.
func latestPullMessages(events []corev1.Event) map[string]string {
	sorted := slices.Clone(events)
	sort.SliceStable(sorted, func(i, j int) bool { return eventTime(sorted[i]).Before(eventTime(sorted[j])) })
	out := map[string]string{}
	for _, ev := range sorted {
		if ev.Reason == EventMissingSecret || !IsPullFailureEvent(ev.Reason, ev.Message) {
			continue
		}
		if img := ImageOfMessage(ev.Message); img != "" {
			out[img] = ev.Message
		}
	}
	return out
}

func eventTime(ev corev1.Event) time.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	default:
		return ev.CreationTimestamp.Time
	}
}

// podContext is what every finding of one Pod shares.
type podContext struct {
	s        *Snapshot
	pod      *corev1.Pod
	ns       *corev1.Namespace
	sa       *corev1.ServiceAccount
	saName   string
	secrets  []PullSecretState
	keyring  *keyring.Keyring
	badPull  *keyring.MalformedSecretError
	missing  []string
	workload string
	secretOf map[string]string // pull secret name → its credential
}

func newPodContext(s *Snapshot, pod *corev1.Pod) *podContext {
	pc := &podContext{s: s, pod: pod, ns: s.Namespaces[pod.Namespace], saName: cmp.Or(pod.Spec.ServiceAccountName, "default"), secretOf: map[string]string{}}
	pc.sa = s.ServiceAccounts[pod.Namespace+"/"+pc.saName]
	if ref := controllerOf(pod); ref != nil {
		pc.workload = s.Workloads[ref.UID]
		if pc.workload == "" {
			pc.workload = strings.ToLower(ref.Kind) + "/" + ref.Name
		}
	}
	var pulls []keyring.PullSecret
	for _, ref := range pod.Spec.ImagePullSecrets {
		st := PullSecretState{Name: ref.Name, State: "ok"}
		sec, ok := s.Secrets[pod.Namespace+"/"+ref.Name]
		switch {
		case !s.SecretsReadable:
			st.State = "unknown"
		case !ok:
			st.State = "missing"
			pc.missing = append(pc.missing, ref.Name)
		default:
			if key, ok := credential.OwnerOf(sec); ok {
				st.Credential = key.String()
				pc.secretOf[ref.Name] = key.String()
			}
			pulls = append(pulls, keyring.PullSecret{Namespace: sec.Namespace, Name: sec.Name, Type: string(sec.Type), Data: sec.Data})
		}
		pc.secrets = append(pc.secrets, st)
	}
	kr, ignored, err := keyring.FromPullSecrets(pulls)
	if err != nil {
		pc.badPull, _ = err.(*keyring.MalformedSecretError)
		kr = &keyring.Keyring{}
	}
	pc.keyring = kr
	for i := range pc.secrets {
		ref := pod.Namespace + "/" + pc.secrets[i].Name
		if pc.badPull != nil && pc.badPull.Secret == ref {
			pc.secrets[i].State = "malformed"
		}
		for _, ig := range ignored {
			if ig.Secret == ref {
				pc.secrets[i].State = "ignored"
			}
		}
	}
	return pc
}

func controllerOf(pod *corev1.Pod) *metav1.OwnerReference {
	for i, o := range pod.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return &pod.OwnerReferences[i]
		}
	}
	return nil
}

// credView is a credential that covers the failing image, seen from the
// Pod.
type credView struct {
	c      *credential.Credential
	secret string
	inPod  bool
	state  CredentialState
}

func (pc *podContext) diagnose(f failing) Finding {
	pod := pc.pod
	out := Finding{Namespace: pod.Namespace, Pod: pod.Name, Workload: pc.workload, Kind: f.kind, Name: f.name,
		Image: f.image, Waiting: f.waiting, KubeletMessage: f.message, Cause: Classify(f.message),
		Credentials: []CredentialState{}}
	if f.waiting == WaitingInvalidImageName {
		out.Cause = InvalidImageName
	}
	if f.waiting == WaitingErrImageNeverPull {
		out.Cause = NeverPull
	}

	repo := ""
	if named, err := keyring.ParseImage(f.image); err == nil {
		repo = named.Name()
	} else {
		out.Cause = InvalidImageName
	}
	target := keyring.ParseTarget(repo)
	covering := map[string]bool{}
	if repo != "" {
		for _, c := range pc.keyring.LookupTarget(target) {
			covering[c.Origin] = true
		}
	}
	out.PullSecrets = append([]PullSecretState{}, pc.secrets...)
	for i := range out.PullSecrets {
		out.PullSecrets[i].Covers = covering[pod.Namespace+"/"+out.PullSecrets[i].Name]
	}

	var creds []credView
	if repo != "" {
		for _, c := range pc.s.Credentials {
			if (c.Kind == credential.KindNamespaced && c.Namespace != pod.Namespace) || c.Deleting() {
				continue
			}
			m, _ := c.Matcher()
			if !m.Matches(target) {
				continue
			}
			v := credView{c: c, secret: c.SecretName()}
			v.inPod = slices.ContainsFunc(pod.Spec.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == v.secret })
			v.state = CredentialState{Kind: string(c.Kind), Namespace: c.Namespace, Name: c.Name, Secret: v.secret, Ready: "Unknown", InPod: v.inPod}
			if cond := readyCondition(c); cond != nil {
				v.state.Ready, v.state.Reason = string(cond.Status), cond.Reason
			}
			if t := c.Status.Token; t != nil && t.ExpiresAt != nil {
				v.state.TokenExpiresAt = t.ExpiresAt.UTC().Format(time.RFC3339)
			}
			creds = append(creds, v)
			out.Credentials = append(out.Credentials, v.state)
		}
	}

	pc.explain(&out, creds, len(covering) > 0)
	return out
}

func readyCondition(c *credential.Credential) *metav1.Condition {
	for i := range c.Status.Conditions {
		if c.Status.Conditions[i].Type == v1alpha1.ConditionReady {
			return &c.Status.Conditions[i]
		}
	}
	return nil
}

// explain fills the diagnosis, its explanation and the fix.
func (pc *podContext) explain(out *Finding, creds []credView, podHasCredential bool) {
	pod, ns := pc.pod, pc.pod.Namespace
	recreate := pc.recreateCommand()
	switch out.Cause {
	case InvalidImageName:
		out.conclude(DiagInvalidImageName, fmt.Sprintf("the image reference %q cannot be parsed: the kubelet will not try it", out.Image),
			pc.setImageCommand(out))
		return
	case NeverPull:
		out.conclude(DiagNeverPull, "imagePullPolicy is Never and the image is not on the node, or this Pod may not use the copy there",
			fmt.Sprintf("kubectl -n %s patch %s --type json -p '[{\"op\":\"replace\",\"path\":\"/spec/%scontainers/0/imagePullPolicy\",\"value\":\"IfNotPresent\"}]'  # or preload the image on the nodes", ns, pc.workloadOrPod(), pc.templatePrefix()))
		return
	}
	if pc.badPull != nil {
		out.Cause = MalformedSecret
		name := strings.TrimPrefix(pc.badPull.Secret, ns+"/")
		expl := fmt.Sprintf("pull Secret %s cannot be parsed (%v): the kubelet fails every pull of this Pod before it contacts a registry", name, pc.badPull.Err)
		fix := fmt.Sprintf("regcred secret create %s -n %s --server %s --username USER --password-stdin --apply  # rewrite it, then recreate the Pod: %s", name, ns, registryHost(out.Image), recreate)
		if owner := pc.secretOf[name]; owner != "" {
			fix = fmt.Sprintf("kubectl -n %s delete secret %s  # %s writes it again; then: %s", ns, name, owner, recreate)
		}
		out.conclude(DiagMalformedSecret, expl, fix)
		return
	}
	switch out.Cause {
	case TLS, DNS, Connection, Timeout:
		out.conclude(DiagNetwork, networkExplanation(out.Cause, registryHost(out.Image)),
			fmt.Sprintf("regcred check %s --pod %s/%s  # from where you run it; then fix the nodes' DNS, network or CA trust", out.Image, ns, pod.Name))
		return
	case RateLimited:
		expl := "the registry is rate-limiting pulls (429)"
		if !podHasCredential {
			expl += " and this Pod pulls anonymously, which has the lowest limit"
		}
		fix := fmt.Sprintf("regcred check %s --pod %s/%s  # shows the pulls left; authenticate with a credential for %s, or pull through a mirror (ClusterImageMirror)", out.Image, ns, pod.Name, registryHost(out.Image))
		out.conclude(DiagRateLimited, expl, fix)
		return
	case NotFound:
		if podHasCredential || len(creds) == 0 {
			out.conclude(DiagImageNotFound, fmt.Sprintf("the registry has no image %s: the repository or tag does not exist", out.Image),
				fmt.Sprintf("regcred check %s --pod %s/%s  # then fix the image name or tag, or push the image", out.Image, ns, pod.Name))
			return
		}
	}

	if out.Cause == Other && podHasCredential {
		out.conclude(DiagUnknown, "the kubelet's message names no cause regcred knows; the Pod has a credential for the image",
			fmt.Sprintf("regcred check %s --pod %s/%s  # asks the registry the way the pull did", out.Image, ns, pod.Name))
		return
	}

	// From here the registry refused, or did not know, an image this Pod
	// may lack a credential for.
	if podHasCredential {
		for _, v := range creds {
			if !v.inPod {
				continue
			}
			if expired(v.c, pc.s.Now) {
				out.Cause = TokenExpired
				out.conclude(DiagTokenExpired, fmt.Sprintf("the cloud token of %s expired at %s and was not refreshed", display(v.c), v.state.TokenExpiresAt),
					fmt.Sprintf("kubectl describe %s  # the Ready condition says why the token was not refreshed", objectRef(v.c)))
				return
			}
			if v.state.Ready == "False" {
				out.conclude(DiagSourceInvalid, fmt.Sprintf("%s is not Ready (%s): its Secret may hold an old or no credential", display(v.c), v.state.Reason),
					fmt.Sprintf("kubectl describe %s", objectRef(v.c)))
				return
			}
			out.conclude(DiagCredentialRejected, fmt.Sprintf("the registry refused the login of %s (Secret %s): its source holds a wrong, expired or revoked password, or one without pull access", display(v.c), v.secret),
				sourceFix(v.c, pc.s.RegcredNamespace, registryHost(out.Image)))
			return
		}
		var names []string
		for _, p := range out.PullSecrets {
			if p.Covers {
				names = append(names, p.Name)
			}
		}
		out.conclude(DiagCredentialRejected, fmt.Sprintf("the registry refused the login of pull Secret %s, which regcred does not manage", strings.Join(names, ", ")),
			fmt.Sprintf("regcred secret create %s -n %s --server %s --username USER --password-stdin --apply  # with a working password or token", names[0], ns, registryHost(out.Image)))
		return
	}

	if len(pc.missing) > 0 && len(creds) == 0 {
		out.Cause = MissingSecret
		out.conclude(DiagMissingSecret, fmt.Sprintf("the Pod lists pull Secret %s, which does not exist in %s; the kubelet skipped it and pulled without a credential", strings.Join(pc.missing, ", "), ns),
			fmt.Sprintf("regcred secret create %s -n %s --server %s --username USER --password-stdin --apply  # then: %s", pc.missing[0], ns, registryHost(out.Image), recreate))
		return
	}
	if len(creds) == 0 {
		out.conclude(DiagNoCredential, fmt.Sprintf("no regcred credential covers %s, and no pull Secret of the Pod does: the kubelet pulled without a credential", registryHost(out.Image)),
			fmt.Sprintf("regcred secret create %s-pull -n %s --server %s --username USER --password-stdin --apply  # then a ClusterRegistryCredential with registries [%s] and source.secretRef %s-pull",
				dnsLabel(registryHost(out.Image)), pc.s.RegcredNamespace, registryHost(out.Image), registryHost(out.Image), dnsLabel(registryHost(out.Image))))
		return
	}
	// Credentials cover the image but none reached the Pod: say why, for
	// the first one in a stable order (RegistryCredentials, then cluster
	// ones, by name).
	slices.SortStableFunc(creds, func(a, b credView) int {
		return cmp.Or(cmp.Compare(b.c.Kind, a.c.Kind), cmp.Compare(a.c.Name, b.c.Name))
	})
	v := creds[0]
	if missing := slices.Contains(pc.missing, v.secret); missing && v.inPod {
		out.Cause = MissingSecret
	}
	pc.whyNotDelivered(out, v, recreate)
}

// conclude records the diagnosis, its explanation and the fix.
func (f *Finding) conclude(d Diagnosis, explanation, fix string) {
	f.Diagnosis, f.Explanation, f.Fix = d, explanation, fix
}

// whyNotDelivered explains why credential v's Secret is not in the Pod, or
// not usable there.
func (pc *podContext) whyNotDelivered(out *Finding, v credView, recreate string) {
	pod, ns := pc.pod, pc.pod.Namespace
	name := display(v.c)
	if v.c.Kind == credential.KindCluster {
		switch {
		case ns == pc.s.RegcredNamespace || slices.Contains(credential.AlwaysExcluded, ns):
			out.conclude(DiagNamespaceExcluded, fmt.Sprintf("%s covers this image but never reaches namespace %s (regcred leaves it alone)", name, ns),
				fmt.Sprintf("kubectl -n %s create -f registrycredential.yaml  # a RegistryCredential of %s's own, with registries [%s]", ns, ns, registryHost(out.Image)))
			return
		case slices.Contains(v.c.Exclude, ns):
			out.conclude(DiagNamespaceExcluded, fmt.Sprintf("%s covers this image but lists %s in spec.excludeNamespaces", name, ns),
				fmt.Sprintf("kubectl edit %s  # remove %s from spec.excludeNamespaces", objectRef(v.c), ns))
			return
		case pc.ns != nil:
			if ok, err := v.c.AppliesTo(pc.ns, pc.s.RegcredNamespace); err == nil && !ok {
				out.conclude(DiagNamespaceNotSelected, fmt.Sprintf("%s covers this image but its namespaceSelector does not pick namespace %s", name, ns),
					labelFix(v.c, ns))
				return
			}
		}
	}
	if cond := v.state; cond.Ready == "False" && !pc.secretExists(v.secret) {
		out.conclude(DiagSourceInvalid, fmt.Sprintf("%s covers this image but is not Ready (%s), so its Secret %s is not in %s", name, cond.Reason, v.secret, ns),
			fmt.Sprintf("kubectl describe %s", objectRef(v.c)))
		return
	}
	if pc.s.SecretsReadable {
		sec, ok := pc.s.Secrets[ns+"/"+v.secret]
		if !ok {
			out.conclude(DiagSecretMissing, fmt.Sprintf("%s covers this image but its Secret %s is not in %s", name, v.secret, ns),
				fmt.Sprintf("kubectl get %s -o jsonpath='{.status.failures}'  # why regcred could not write it", objectRef(v.c)))
			if v.inPod {
				out.Explanation += "; the Pod lists it and the kubelet skipped it"
			}
			return
		}
		if owner, ok := credential.OwnerOf(sec); !ok || owner != v.c.Key {
			out.conclude(DiagSecretForeign, fmt.Sprintf("%s covers this image but Secret %s/%s belongs to someone else, and regcred never overwrites it", name, ns, v.secret),
				fmt.Sprintf("kubectl -n %s delete secret %s  # if nobody needs it; regcred then writes its own (or set spec.secretName)", ns, v.secret))
			return
		}
		// Creation times have a resolution of one second: within the same
		// second neither is before the other, and the ServiceAccount test
		// below decides.
		if pod.CreationTimestamp.Before(&sec.CreationTimestamp) {
			why := fmt.Sprintf("%s covers this image, but the Pod was created before its Secret %s reached %s", name, v.secret, ns)
			if pod.CreationTimestamp.Time.Before(v.c.Object.GetCreationTimestamp().Time) {
				why = fmt.Sprintf("%s covers this image, but the Pod was created before the credential", name)
			}
			out.conclude(DiagPodPredatesCredential, why+"; the kubelet never re-reads a Pod's pull secrets: recreate it", recreate)
			return
		}
	}
	if pc.sa != nil && slices.ContainsFunc(pc.sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == v.secret }) && len(pod.Spec.ImagePullSecrets) == 0 {
		out.conclude(DiagServiceAccountLater, fmt.Sprintf("ServiceAccount %s lists %s now, but did not when the Pod was made; a Pod gets its ServiceAccount's pull secrets only at creation", pc.saName, v.secret), recreate)
		return
	}
	if !v.c.InjectionEnabled() {
		out.conclude(DiagInjectionDisabled, fmt.Sprintf("%s covers this image but has podInjection disabled, and ServiceAccount %s does not list %s", name, pc.saName, v.secret),
			fmt.Sprintf("kubectl patch %s --type merge -p '{\"spec\":{\"podInjection\":{\"enabled\":true}}}' && %s", objectRef(v.c), recreate))
		return
	}
	if pod.Labels[credential.LabelInject] == "false" || (pc.ns != nil && pc.ns.Labels[credential.LabelInject] == "false") {
		where := "the Pod"
		fix := fmt.Sprintf("kubectl -n %s label pod %s %s-  # then recreate it: %s", ns, pod.Name, credential.LabelInject, recreate)
		if pc.ns != nil && pc.ns.Labels[credential.LabelInject] == "false" {
			where = "namespace " + ns
			fix = fmt.Sprintf("kubectl label namespace %s %s- && %s", ns, credential.LabelInject, recreate)
		}
		out.conclude(DiagInjectionOptedOut, fmt.Sprintf("%s covers this image but %s opts out of injection (%s=false)", name, where, credential.LabelInject), fix)
		return
	}
	if pc.s.Webhook == nil {
		out.conclude(DiagWebhookNotRegistered, fmt.Sprintf("%s covers this image but regcred's Pod webhook is not registered, so nothing added %s to the Pod", name, v.secret),
			fmt.Sprintf("helm upgrade regcred regcred/regcred -n %s --reuse-values --set webhook.enabled=true  # then: %s", pc.s.RegcredNamespace, recreate))
		return
	}
	if pod.CreationTimestamp.Time.Before(v.c.Object.GetCreationTimestamp().Time) {
		out.conclude(DiagPodPredatesCredential, fmt.Sprintf("%s covers this image, but the Pod was created before the credential; the kubelet never re-reads a Pod's pull secrets: recreate it", name), recreate)
		return
	}
	expl := fmt.Sprintf("%s covers this image and its Secret was ready, but the webhook did not add it: it was not called when the Pod was made", name)
	if strings.EqualFold(pc.s.Webhook.FailurePolicy, "Ignore") {
		expl += " (failurePolicy Ignore lets Pods through while the webhook is down)"
	}
	out.conclude(DiagWebhookNotCalled, expl, fmt.Sprintf("kubectl -n %s get pods  # check the webhook's replicas; then: %s", pc.s.RegcredNamespace, recreate))
}

func (pc *podContext) secretExists(name string) bool {
	_, ok := pc.s.Secrets[pc.pod.Namespace+"/"+name]
	return ok
}

// recreateCommand makes the kubelet read pull secrets again: a new Pod.
func (pc *podContext) recreateCommand() string {
	ns, pod := pc.pod.Namespace, pc.pod.Name
	kind, _, _ := strings.Cut(pc.workload, "/")
	switch kind {
	case "deployment", "statefulset", "daemonset":
		return fmt.Sprintf("kubectl -n %s rollout restart %s", ns, pc.workload)
	case "":
		return fmt.Sprintf("kubectl -n %s get pod %s -o yaml | kubectl replace --force -f -", ns, pod)
	default:
		// Jobs, CronJobs and ReplicaSets make a new Pod for a deleted one.
		return fmt.Sprintf("kubectl -n %s delete pod %s", ns, pod)
	}
}

func (pc *podContext) workloadOrPod() string {
	if kind, _, _ := strings.Cut(pc.workload, "/"); kind == "deployment" || kind == "statefulset" || kind == "daemonset" {
		return pc.workload
	}
	return "pod/" + pc.pod.Name
}

func (pc *podContext) templatePrefix() string {
	if pc.workloadOrPod() != "pod/"+pc.pod.Name {
		return "template/spec/"
	}
	return ""
}

func (pc *podContext) setImageCommand(f *Finding) string {
	if f.Kind == "imageVolume" {
		return fmt.Sprintf("kubectl -n %s edit %s  # fix the reference of image volume %s", f.Namespace, pc.workloadOrPod(), f.Name)
	}
	return fmt.Sprintf("kubectl -n %s set image %s %s=REGISTRY/REPOSITORY:TAG", f.Namespace, pc.workloadOrPod(), f.Name)
}

func expired(c *credential.Credential, now time.Time) bool {
	t := c.Status.Token
	return t != nil && t.ExpiresAt != nil && !t.ExpiresAt.Time.After(now)
}

func display(c *credential.Credential) string {
	if c.Kind == credential.KindNamespaced {
		return fmt.Sprintf("RegistryCredential %s/%s", c.Namespace, c.Name)
	}
	return "ClusterRegistryCredential " + c.Name
}

// objectRef names the credential for kubectl.
func objectRef(c *credential.Credential) string {
	if c.Kind == credential.KindNamespaced {
		return fmt.Sprintf("registrycredential %s -n %s", c.Name, c.Namespace)
	}
	return "clusterregistrycredential " + c.Name
}

// sourceFix rewrites a credential's source with a working password.
func sourceFix(c *credential.Credential, regcredNS, host string) string {
	switch {
	case c.Spec.Source.SecretRef != nil:
		return fmt.Sprintf("regcred secret create %s -n %s --server %s --username USER --password-stdin --apply  # a working password or token; every copy follows",
			c.Spec.Source.SecretRef.Name, c.SourceNamespace(regcredNS), host)
	default:
		return fmt.Sprintf("kubectl describe %s  # the cloud identity may not pull this repository", objectRef(c))
	}
}

// labelFix adds a label the selector wants, when it is a plain
// matchLabels selector.
func labelFix(c *credential.Credential, ns string) string {
	sel := c.NamespaceSelector
	if sel != nil && len(sel.MatchExpressions) == 0 && len(sel.MatchLabels) > 0 {
		var kv []string
		for k, v := range sel.MatchLabels {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv)
		return fmt.Sprintf("kubectl label namespace %s %s  # then recreate the Pod", ns, strings.Join(kv, " "))
	}
	return fmt.Sprintf("kubectl edit %s  # make spec.namespaceSelector pick %s", objectRef(c), ns)
}

func networkExplanation(c Cause, host string) string {
	switch c {
	case TLS:
		return fmt.Sprintf("the node does not trust %s's certificate, or it does not speak TLS: install its CA on the nodes (containerd certs.d)", host)
	case DNS:
		return fmt.Sprintf("the node cannot resolve %s: check the name, the nodes' DNS and any mirror rule", host)
	case Connection:
		return fmt.Sprintf("the node cannot connect to %s: the registry is down, the port is wrong, or a firewall or proxy is in the way", host)
	default:
		return fmt.Sprintf("%s did not answer the node in time: check the network path and proxies", host)
	}
}

// registryHost is the image's registry as a person writes it.
func registryHost(image string) string {
	named, err := keyring.ParseImage(image)
	if err != nil {
		return "REGISTRY"
	}
	host, _, _ := strings.Cut(named.Name(), "/")
	return host
}

// dnsLabel makes a Secret name out of a host.
func dnsLabel(host string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(host) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else if b.Len() > 0 {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}
