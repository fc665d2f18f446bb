package doctor

import (
	"cmp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/kubeletmsg"
)

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
	// catalogue is the snapshot's credentials, compiled.
	catalogue *credential.Catalogue
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
	entry  *credential.Entry // c, compiled
	secret string
	inPod  bool
	state  CredentialState
}

// diagnose explains one failing image of the Pod.
func (pc *podContext) diagnose(f failing) Finding {
	pod := pc.pod
	out := Finding{Namespace: pod.Namespace, Pod: pod.Name, Workload: pc.workload, Kind: f.kind, Name: f.name,
		Image: f.image, Waiting: f.waiting, KubeletMessage: f.message, Cause: kubeletmsg.Classify(f.message),
		Credentials: []CredentialState{}}
	if f.waiting == kubeletmsg.WaitingInvalidImageName {
		out.Cause = kubeletmsg.InvalidImageName
	}
	if f.waiting == kubeletmsg.WaitingErrImageNeverPull {
		out.Cause = kubeletmsg.NeverPull
	}

	repo := ""
	if named, err := keyring.ParseImage(f.image); err == nil {
		repo = named.Name()
	} else {
		out.Cause = kubeletmsg.InvalidImageName
	}
	target := keyring.ParseTarget(repo)
	podCovers := map[string]bool{} // pull Secrets of the Pod the kubelet would try
	if repo != "" {
		for _, c := range pc.keyring.LookupTarget(target) {
			podCovers[c.Origin] = true
		}
	}
	out.PullSecrets = append([]PullSecretState{}, pc.secrets...)
	for i := range out.PullSecrets {
		out.PullSecrets[i].Covers = podCovers[pod.Namespace+"/"+out.PullSecrets[i].Name]
	}

	var creds []credView
	if repo != "" {
		creds = pc.covering(target)
	}
	for _, v := range creds {
		out.Credentials = append(out.Credentials, v.state)
	}
	pc.explain(&out, creds, len(podCovers) > 0, f.at)
	return out
}

// covering lists regcred's credentials that cover the image and may act
// in the Pod's namespace, as the catalogue orders them.
func (pc *podContext) covering(target keyring.Target) []credView {
	var out []credView
	for _, e := range pc.catalogue.Covering(pc.pod.Namespace, target) {
		out = append(out, pc.view(e))
	}
	return out
}

// view is the credential as the Pod sees it.
func (pc *podContext) view(e *credential.Entry) credView {
	c := e.Credential
	v := credView{c: c, entry: e}
	// A credential delivered to nodes only has no Secret by design: no
	// pull Secret of the Pod is its.
	if c.DeliversSecrets() {
		v.secret = e.SecretName()
		v.inPod = slices.ContainsFunc(pc.pod.Spec.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == v.secret })
	}
	v.state = CredentialState{Kind: string(c.Kind), Namespace: c.Namespace, Name: c.Name, Secret: v.secret, Ready: "Unknown", InPod: v.inPod}
	if c.DeliversToNodes() {
		v.state.Delivery = string(c.Spec.Delivery)
	}
	if cond := readyCondition(c); cond != nil {
		v.state.Ready, v.state.Reason = string(cond.Status), cond.Reason
	}
	if t := c.Status.Token; t != nil && t.ExpiresAt != nil {
		v.state.TokenExpiresAt = t.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return v
}

func readyCondition(c *credential.Credential) *metav1.Condition {
	for i := range c.Status.Conditions {
		if c.Status.Conditions[i].Type == v1alpha1.ConditionReady {
			return &c.Status.Conditions[i]
		}
	}
	return nil
}

func (pc *podContext) secretExists(name string) bool {
	_, ok := pc.s.Secrets[pc.pod.Namespace+"/"+name]
	return ok
}

func expired(c *credential.Credential, now time.Time) bool {
	t := c.Status.Token
	return t != nil && t.ExpiresAt != nil && !t.ExpiresAt.Time.After(now)
}
