package policytest

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/policy"
)

// The corpus of the differential tests of Pod injection, shared by the
// in-process comparison (internal/webhook) and the one through a real API
// server (internal/policy).

// Cred is a ClusterRegistryCredential for registries, from the Secret of
// its own name in regcred's namespace.
func Cred(name string, registries ...string) *v1alpha1.ClusterRegistryCredential {
	c := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: name}}
	c.Spec.Registries = registries
	c.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: name}
	return c
}

// Pod is a Pod of one container per image, c0, c1, …
func Pod(images ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "apps"}}
	for i, img := range images {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c" + string(rune('0'+i)), Image: img})
	}
	return p
}

// Objects are the credentials, mirrors and namespaces of the corpus:
// globs, ports, paths, Docker Hub keys and aliases, tenants, selectors,
// exclusions, a credential that is off and one that is Node-delivered.
func Objects() []client.Object {
	selected := Cred("team-b-quay", "quay.io")
	selected.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}
	expr := Cred("not-team-b", "gcr.io/shared")
	expr.Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "team", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"b"}},
		{Key: "tier", Operator: metav1.LabelSelectorOpDoesNotExist},
	}}
	excluded := Cred("excluded-in-apps", "excluded.example.com")
	excluded.Spec.ExcludeNamespaces = []string{"apps"}
	off := Cred("off", "off.example.com")
	off.Spec.PodInjection.Enabled = ptr.To(false)
	node := Cred("node-only", "node.example.com")
	node.Spec.Delivery = v1alpha1.DeliveryNode
	node.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsAll
	sameSecret := Cred("same-secret-b", "harbor.internal/team")
	sameSecret.Spec.SecretName = "regcred-harbor"
	tenant := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "tenant-ghcr"}}
	tenant.Spec.Registries = []string{"ghcr.io/acme", "https://ghcr.io/v2/acme-two/"}
	tenant.Spec.SecretName = "ghcr-acme"
	tenant.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
	other := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "other-tenant"}}
	other.Spec.Registries = []string{"ghcr.io", "weird\"key\\with'quotes.example.com"}
	other.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
	hostile := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "hostile"}}
	hostile.Spec.Registries = []string{"x') || true || ('", "[a.]b.example.com", "[^a]c.example.com", "d*.example.com", "\\e.example.com", "[", "a|b.example.com"}
	hostile.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
	airgap := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "airgap"}}
	airgap.Spec.Mirrors = []v1alpha1.MirrorRule{
		{Source: "docker.io", Mirror: "harbor.internal/dockerhub"},
		{Source: "registry.k8s.io", Mirror: "harbor.internal/k8s"},
		{Source: "docker.io/bitnami", Mirror: "mirror.example.com:5000/bitnami"},
	}
	teamMirror := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "b-team"}}
	teamMirror.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}
	teamMirror.Spec.Mirrors = []v1alpha1.MirrorRule{{Source: "ghcr.io/acme", Mirror: "harbor.internal/acme"}, {Source: "index.docker.io", Mirror: "other.example.com/hub"}}
	return []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"team": "a", corev1.LabelMetadataName: "apps"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b", Labels: map[string]string{"team": "b", corev1.LabelMetadataName: "team-b"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tiered", Labels: map[string]string{"tier": "1", corev1.LabelMetadataName: "tiered"}}},
		Cred("harbor", "harbor.internal"),
		Cred("ecr-prod", "*.dkr.ecr.eu-west-1.amazonaws.com"),
		Cred("hub", "docker.io"),
		Cred("hub-index", "https://index.docker.io/v1/"),
		Cred("ports", "localhost:5000", "127.0.0.1:5001/team", "[::1]:5002"),
		Cred("glob-labels", "reg?.example.com", "*.*.example.org", "[a-c]x.example.net/p"),
		Cred("path-prefix", "example.com/team"),
		Cred("mirror-port", "mirror.example.com:5000"),
		selected, expr, excluded, off, node, sameSecret, tenant, other, hostile, airgap, teamMirror,
	}
}

// Case is one Pod of the corpus and its namespace.
type Case struct {
	Namespace string
	Pod       *corev1.Pod
}

// Corpus is at least 200 Pods: the kubelet matching vectors as
// images, the webhook's golden shapes, and combinations.
func Corpus() []Case {
	images := []string{
		"nginx", "nginx:1.27", "library/nginx", "docker.io/nginx", "docker.io/library/nginx:1", "index.docker.io/library/nginx",
		"bitnami/redis:7", "docker.io/bitnami/redis", "docker.io/bitnamilegacy/redis", "user/app@sha256:" + strings.Repeat("a", 64),
		"registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10@sha256:" + strings.Repeat("b", 64),
		"harbor.internal/team/app:1", "harbor.internal/teams/app", "harbor.internal:443/team/app", "sub.harbor.internal/app",
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com/tools:1", "dkr.ecr.eu-west-1.amazonaws.com/x", "1.dkr.ecr.eu-west-2.amazonaws.com/x",
		"localhost:5000/app", "localhost/app", "localhost:5001/app", "127.0.0.1:5001/team/x", "127.0.0.1:5001/other", "[::1]:5002/v6", "[::1]/v6",
		"reg1.example.com/a", "regxx.example.com/a", "a.b.example.org/c", "a.example.org/c", "bx.example.net/p/q", "dx.example.net/p", "bx.example.net/q",
		"example.com/team/app", "example.com/teams/app", "example.com/te", "quay.io/x/y:1", "gcr.io/shared/img", "gcr.io/other/img",
		"excluded.example.com/a", "off.example.com/a", "node.example.com/a", "ghcr.io/acme/api:3", "ghcr.io/acme-two/x", "ghcr.io/other/x",
		"ab.example.com/x", "bc.example.com/x", "ac.example.com/x", "dzz.example.com/x", "e.example.com/x", "UPPER/case", "Upper.example.com/x",
		"::::", "", "nginx@sha256:abc", "nginx@md5:" + strings.Repeat("a", 32), "a/b/c/d/e/f:tag", strings.Repeat("a", 64),
		"Registry.Example.com:5000/app", "mirror.example.com:5000/bitnami/x", "docker.io/library/" + strings.Repeat("x", 240),
		"weird\"key\\with'quotes.example.com/a",
	}
	namespaces := []string{"apps", "team-b", "tiered"}
	var out []Case
	for _, img := range images {
		for _, ns := range namespaces {
			p := Pod(img)
			p.Namespace = ns
			out = append(out, Case{ns, p})
		}
	}
	// Shapes: several images, init containers, image volumes, present
	// Secrets, annotations before, opt-outs.
	for i := 0; i+2 < len(images); i += 3 {
		p := Pod(images[i], images[i+1])
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: images[i+2]}}
		p.Spec.Volumes = []corev1.Volume{
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "model", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: images[(i+5)%len(images)]}}},
		}
		switch i % 4 {
		case 0:
			p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "user-secret"}, {Name: "regcred-harbor"}}
		case 1:
			p.Annotations = map[string]string{policy.AnnotationInjected: "earlier,apps/x", "other": "kept"}
		case 2:
			p.Annotations = map[string]string{policy.AnnotationRewritten: `{"c0":"before"}`}
		case 3:
			p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "ghcr-acme"}}
		}
		p.Namespace = []string{"apps", "team-b", "tiered"}[i%3]
		out = append(out, Case{p.Namespace, p})
	}
	optOut := Pod("harbor.internal/team/app:1")
	optOut.Labels = map[string]string{credential.LabelInject: "false"}
	out = append(out, Case{"apps", optOut})
	return out
}

// Tenant is a RegistryCredential of keys registries "NS-kI.example.com".
func Tenant(namespace, name string, keys int) *v1alpha1.RegistryCredential {
	rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	for k := 0; k < keys; k++ {
		rc.Spec.Registries = append(rc.Spec.Registries, namespace+"-k"+strconv.Itoa(k)+".example.com")
	}
	rc.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "src"}
	return rc
}
