package doctor

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/kubeletmsg"
)

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
// matchLabels selector; then says what follows.
func labelFix(c *credential.Credential, ns, then string) string {
	sel := c.NamespaceSelector
	if sel != nil && len(sel.MatchExpressions) == 0 && len(sel.MatchLabels) > 0 {
		var kv []string
		for k, v := range sel.MatchLabels {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv)
		return fmt.Sprintf("kubectl label namespace %s %s  # %s", ns, strings.Join(kv, " "), then)
	}
	return fmt.Sprintf("kubectl edit %s  # make spec.namespaceSelector pick %s", objectRef(c), ns)
}

func networkExplanation(c kubeletmsg.Cause, host string) string {
	switch c {
	case kubeletmsg.TLS:
		return fmt.Sprintf("the node does not trust %s's certificate, or it does not speak TLS: install its CA on the nodes (containerd certs.d)", host)
	case kubeletmsg.DNS:
		return fmt.Sprintf("the node cannot resolve %s: check the name, the nodes' DNS and any mirror rule", host)
	case kubeletmsg.Connection:
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

// checkCommand asks the registry about the finding's image the way the
// kubelet did; comment says what to do with the answer.
func checkCommand(f *Finding, comment string) string {
	return fmt.Sprintf("regcred check %s --pod %s/%s  # %s", f.Image, f.Namespace, f.Pod, comment)
}

// pullPolicyFix lets the kubelet pull an image the node does not have.
func (pc *podContext) pullPolicyFix() string {
	return fmt.Sprintf("kubectl -n %s patch %s --type json -p '[{\"op\":\"replace\",\"path\":\"/spec/%scontainers/0/imagePullPolicy\",\"value\":\"IfNotPresent\"}]'  # or preload the image on the nodes", pc.pod.Namespace, pc.workloadOrPod(), pc.templatePrefix())
}

// secretNameArg is a Secret name the Pod lists, for a command a person
// copies: the API server does not check the names a Pod lists, so one that
// is not a valid Secret name (and may hold `;` or `$(...)`) is replaced by
// a placeholder.
func secretNameArg(name string) string {
	if len(validation.IsDNS1123Subdomain(name)) > 0 {
		return "SECRET-NAME"
	}
	return name
}
