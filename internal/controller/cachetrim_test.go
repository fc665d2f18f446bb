package controller

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
)

func bigMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: name, Namespace: "tenant", UID: "u1", ResourceVersion: "7", Generation: 2,
		Labels: map[string]string{"team": "a"},
		Annotations: map[string]string{
			"regcred.dev/pull-secrets":        "regcred-x",
			"regcred.dev/token-audiences":     "sts.amazonaws.com",
			"tenant.example.com/huge":         strings.Repeat("x", 250<<10),
			"regcred.dev/pad-1":               strings.Repeat("x", 250<<10),
			"regcred.dev/credential-x":        "{}",
			"kubectl.kubernetes.io/last-seen": "{}",
		},
		OwnerReferences: []metav1.OwnerReference{{Kind: "RegistryCredential", Name: "c", UID: "o1"}},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}
}

func wantMetaKept(t *testing.T, o client.Object) {
	t.Helper()
	wantIdentityKept(t, o)
	if o.GetLabels()["team"] != "a" {
		t.Errorf("labels lost: %v", o.GetLabels())
	}
}

// wantIdentityKept: identity, owner references and exactly the
// annotations regcred reads, whatever else carries its prefix.
func wantIdentityKept(t *testing.T, o client.Object) {
	t.Helper()
	if o.GetName() == "" || o.GetNamespace() != "tenant" || o.GetUID() != "u1" || o.GetResourceVersion() != "7" || o.GetGeneration() != 2 {
		t.Errorf("identity lost: %+v", o)
	}
	if len(o.GetOwnerReferences()) != 1 {
		t.Errorf("owner references lost: %v", o.GetOwnerReferences())
	}
	want := map[string]string{"regcred.dev/pull-secrets": "regcred-x"}
	if got := o.GetAnnotations(); len(got) != len(want) || got["regcred.dev/pull-secrets"] != "regcred-x" {
		t.Errorf("annotations = %d keys, want only regcred.dev/*: %v", len(got), want)
	}
	if len(o.GetManagedFields()) != 0 {
		t.Error("managedFields kept")
	}
}

func TestTrimServiceAccount(t *testing.T) {
	sa := &corev1.ServiceAccount{ObjectMeta: bigMeta("default"),
		Secrets:          []corev1.ObjectReference{{Name: "token"}},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred-x"}, {Name: "theirs"}}}
	out, err := trimmed(trimServiceAccount)(sa)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.ServiceAccount)
	wantMetaKept(t, got)
	if len(got.ImagePullSecrets) != 2 || got.ImagePullSecrets[1].Name != "theirs" {
		t.Errorf("imagePullSecrets = %v", got.ImagePullSecrets)
	}
	if got.Secrets != nil {
		t.Error("secrets kept")
	}
	// Idempotent: the informer may transform an object twice.
	if again, _ := trimmed(trimServiceAccount)(got); len(again.(*corev1.ServiceAccount).Annotations) != 1 {
		t.Error("not idempotent")
	}
}

func TestTrimSecret(t *testing.T) {
	small := []byte(`{"auths":{}}`)
	for _, tc := range []struct {
		name     string
		data     map[string][]byte
		keepData bool
	}{
		{"one small docker config", map[string][]byte{corev1.DockerConfigJsonKey: small}, true},
		{"docker config at the bound", map[string][]byte{corev1.DockerConfigJsonKey: make([]byte, maxCachedSecretData)}, true},
		{"docker config over the bound (its digest)", map[string][]byte{corev1.DockerConfigJsonKey: make([]byte, maxCachedSecretData+1)}, true},
		{"another key beside it", map[string][]byte{corev1.DockerConfigJsonKey: small, "blob": make([]byte, 1<<20)}, false},
		{"only other keys", map[string][]byte{"blob": make([]byte, 1<<20)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: bigMeta("regcred-x"), Type: corev1.SecretTypeDockerConfigJson, Data: tc.data}
			s.Labels[credential.LabelManaged] = "true"
			s.Labels["padding"] = strings.Repeat("x", 63)
			out, _ := trimmed(trimSecret)(s)
			got := out.(*corev1.Secret)
			wantIdentityKept(t, got)
			if l := got.GetLabels(); len(l) != 1 || l[credential.LabelManaged] != "true" {
				t.Errorf("labels = %v, want only %s", l, credential.LabelManaged)
			}
			if got.Type != corev1.SecretTypeDockerConfigJson {
				t.Errorf("type = %q", got.Type)
			}
			if kept := got.Data != nil; kept != tc.keepData {
				t.Errorf("data kept = %v, want %v", kept, tc.keepData)
			}
		})
	}
}

// A large docker config is cached as its digest, which still compares
// equal to the rendering and to nothing else.
func TestTrimmedLargeConfigComparesByDigest(t *testing.T) {
	big := []byte(strings.Repeat("a", maxCachedSecretData+10))
	s := &corev1.Secret{Data: map[string][]byte{corev1.DockerConfigJsonKey: big}}
	out, _ := trimmed(trimSecret)(s)
	cached := out.(*corev1.Secret).Data[corev1.DockerConfigJsonKey]
	if len(cached) > 100 {
		t.Fatalf("cached %d bytes", len(cached))
	}
	if !sameData(cached, big) || !(&rendered{Data: big}).current(cached) {
		t.Error("the digest does not match its config")
	}
	other := []byte(strings.Repeat("b", maxCachedSecretData+10))
	if sameData(cached, other) || sameData(cached, []byte("small")) {
		t.Error("the digest matches another config")
	}
	want := &corev1.Secret{Data: map[string][]byte{corev1.DockerConfigJsonKey: big}}
	if !secretUpToDate(out.(*corev1.Secret), want) {
		t.Error("an up-to-date large Secret looks stale")
	}
}

// A Secret whose data the cache dropped is never up to date, so it is read
// fresh before it is written.
func TestTrimmedSecretIsNotUpToDate(t *testing.T) {
	want := &corev1.Secret{Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}}
	cur := &corev1.Secret{ObjectMeta: bigMeta("regcred-x"), Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`), "blob": {1}}}
	out, _ := trimmed(trimSecret)(cur)
	if secretUpToDate(out.(*corev1.Secret), want) {
		t.Error("a Secret with dropped data looks up to date")
	}
}

func TestTrimNamespace(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: bigMeta("tenant"), Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}}
	ns.Namespace = "tenant" // bigMeta's; a Namespace has none, the check is shared
	out, _ := trimmed(trimNamespace)(ns)
	got := out.(*corev1.Namespace)
	wantMetaKept(t, got)
	if got.Status.Phase != corev1.NamespaceTerminating {
		t.Errorf("phase = %q", got.Status.Phase)
	}
}

func TestTrimPassesOtherObjectsThrough(t *testing.T) {
	in := "not an object"
	if out, err := trimmed(trimSecret)(in); err != nil || out != in {
		t.Errorf("got %v, %v", out, err)
	}
}

// An annotation regcred reads but padded past what regcred itself writes
// is dropped too: the exact keys alone would still let a tenant put
// 256 KiB per object into every replica's cache.
func TestTrimDropsPaddedRegcredAnnotation(t *testing.T) {
	sa := &corev1.ServiceAccount{ObjectMeta: bigMeta("default")}
	sa.Annotations[credential.AnnotationPullSecrets] = strings.Repeat("a,", maxCachedAnnotation)
	out, _ := trimmed(trimServiceAccount)(sa)
	got := out.(*corev1.ServiceAccount).Annotations
	if _, ok := got[credential.AnnotationPullSecrets]; ok || len(got) != 0 {
		t.Errorf("annotations kept: %d keys", len(got))
	}
}

func TestTrimRegistryCredential(t *testing.T) {
	c := &v1alpha1.RegistryCredential{ObjectMeta: bigMeta("c"),
		Spec: v1alpha1.CredentialSpec{Registries: []string{"harbor.example.com"}}}
	c.Annotations["kubectl.kubernetes.io/last-applied-configuration"] = strings.Repeat("x", 200<<10)
	out, _ := tenantTrim(&v1alpha1.RegistryCredential{})(c)
	got := out.(*v1alpha1.RegistryCredential)
	wantMetaKept(t, got)
	if len(got.Spec.Registries) != 1 {
		t.Error("spec lost")
	}
}
