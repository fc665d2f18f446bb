package controller_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/testenv"
)

// TestFanOutRotateAndCleanUp walks a ClusterRegistryCredential through its
// life: fan-out to the selected namespaces, ServiceAccounts patched beside
// others' entries, a namespace created later, rotation, deselection, and
// deletion removing exactly what regcred added.
func TestFanOutRotateAndCleanUp(t *testing.T) {
	c := startManager(t)
	sel := map[string]string{"regcred-test": "fanout"}
	nsA := newNamespace(t, c, "fanout-a", sel)
	nsB := newNamespace(t, c, "fanout-b", sel)
	other := newNamespace(t, c, "fanout-other", nil)
	for _, ns := range []string{nsA, nsB, other} {
		createSA(t, c, ns, "default", nil)
	}
	// Someone else's entry, which must survive everything.
	createSA(t, c, nsA, "builder", nil, "team-own-secret")

	v1 := testenv.DockerConfigJSON(t, "harbor.example.com", "robot", "first-pass")
	src := createSource(t, c, regcredNamespace, "fanout-source", v1)
	cred := clusterCred("fanout", "fanout-source", sel, "harbor.example.com")
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}

	for _, ns := range []string{nsA, nsB} {
		waitSecretData(t, c, ns, "regcred-fanout", v1)
		waitPullSecrets(t, c, ns, "default", "regcred-fanout")
	}
	waitPullSecrets(t, c, nsA, "builder", "team-own-secret", "regcred-fanout")
	clusterReady(t, c, "fanout", metav1.ConditionTrue, v1alpha1.ReasonSynced, "2/2")
	if _, _, err := secretData(bg, c, other, "regcred-fanout"); err == nil {
		t.Errorf("unselected namespace %s got the Secret", other)
	}
	_, s, _ := secretData(bg, c, nsA, "regcred-fanout")
	if s.Type != corev1.SecretTypeDockerConfigJson || s.Labels[credential.LabelManaged] != "true" ||
		s.Annotations[credential.AnnotationCredential] != "ClusterRegistryCredential/fanout" {
		t.Errorf("managed Secret metadata: type %s labels %v annotations %v", s.Type, s.Labels, s.Annotations)
	}

	// A namespace created after the credential, and a ServiceAccount
	// created later (a workflow engine's own).
	nsC := newNamespace(t, c, "fanout-c", sel)
	createSA(t, c, nsC, "default", nil)
	waitSecretData(t, c, nsC, "regcred-fanout", v1)
	waitPullSecrets(t, c, nsC, "default", "regcred-fanout")
	createSA(t, c, nsC, "argo-workflow", nil)
	waitPullSecrets(t, c, nsC, "argo-workflow", "regcred-fanout")
	clusterReady(t, c, "fanout", metav1.ConditionTrue, v1alpha1.ReasonSynced, "3/3")

	// Rotation.
	v2 := testenv.DockerConfigJSON(t, "harbor.example.com", "robot", "second-pass")
	src.Data[corev1.DockerConfigJsonKey] = v2
	if err := c.Update(bg, src); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{nsA, nsB, nsC} {
		waitSecretData(t, c, ns, "regcred-fanout", v2)
	}
	// Ready 3/3 held before the rotation too: wait for the status to name
	// the new source version, which the credential controller writes after
	// its batching delay.
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		got := clusterReady(t, c, "fanout", metav1.ConditionTrue, v1alpha1.ReasonSynced, "3/3")
		if got.Status.SourceVersion != src.ResourceVersion {
			return fmt.Errorf("sourceVersion %q, want %q", got.Status.SourceVersion, src.ResourceVersion)
		}
		return nil
	})

	// Deselect one namespace: its copy and entries go, nothing else.
	var nsObj corev1.Namespace
	if err := c.Get(bg, client.ObjectKey{Name: nsB}, &nsObj); err != nil {
		t.Fatal(err)
	}
	delete(nsObj.Labels, "regcred-test")
	if err := c.Update(bg, &nsObj); err != nil {
		t.Fatal(err)
	}
	waitSecretGone(t, c, nsB, "regcred-fanout")
	waitPullSecrets(t, c, nsB, "default")
	clusterReady(t, c, "fanout", metav1.ConditionTrue, v1alpha1.ReasonSynced, "2/2")

	// Delete the credential: exactly what regcred added goes away.
	deleteAndWait(t, c, cred)
	for _, ns := range []string{nsA, nsC} {
		waitSecretGone(t, c, ns, "regcred-fanout")
		waitPullSecrets(t, c, ns, "default")
	}
	waitPullSecrets(t, c, nsA, "builder", "team-own-secret")
	waitPullSecrets(t, c, nsC, "argo-workflow")
	var sa corev1.ServiceAccount
	if err := c.Get(bg, client.ObjectKey{Namespace: nsA, Name: "builder"}, &sa); err != nil {
		t.Fatal(err)
	}
	if _, ok := sa.Annotations[credential.AnnotationPullSecrets]; ok {
		t.Errorf("tracking annotation left behind: %v", sa.Annotations)
	}
}

// TestDefaultServiceAccountOnly is what CI scripts do by hand today:
// `kubectl patch serviceaccount default` in default and longhorn-system.
func TestDefaultServiceAccountOnly(t *testing.T) {
	c := startManager(t)
	createNamespace(t, c, "longhorn-system", nil)
	for _, ns := range []string{"default", "longhorn-system"} {
		createSA(t, c, ns, "default", nil)
		createSA(t, c, ns, "longhorn-service-account", nil)
	}
	createSource(t, c, regcredNamespace, "default-only-source", testenv.DockerConfigJSON(t, "docker.io", "hubuser", "hubpass"))
	cred := clusterCred("default-only", "default-only-source", nil, "docker.io")
	cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{"default", "longhorn-system"}}}}
	cred.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsDefault
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"default", "longhorn-system"} {
		waitPullSecrets(t, c, ns, "default", "regcred-default-only")
	}
	clusterReady(t, c, "default-only", metav1.ConditionTrue, v1alpha1.ReasonSynced, "2/2")
	for _, ns := range []string{"default", "longhorn-system"} {
		if got, _ := pullSecretsOf(bg, c, ns, "longhorn-service-account"); len(got) != 0 {
			t.Errorf("%s/longhorn-service-account was patched in Default mode: %v", ns, got)
		}
	}
	deleteAndWait(t, c, cred)
	waitPullSecrets(t, c, "default", "default")
}

func TestServiceAccountSelector(t *testing.T) {
	c := startManager(t)
	ns := newNamespace(t, c, "sasel", map[string]string{"regcred-test": "sasel"})
	createSA(t, c, ns, "ci", map[string]string{"pulls": "private"})
	createSA(t, c, ns, "web", nil)
	createSource(t, c, regcredNamespace, "sasel-source", testenv.DockerConfigJSON(t, "ghcr.io", "bot", "tok"))
	cred := clusterCred("sasel", "sasel-source", map[string]string{"regcred-test": "sasel"}, "ghcr.io")
	cred.Spec.ServiceAccounts = v1alpha1.ServiceAccountSelection{Mode: v1alpha1.ServiceAccountsSelector,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"pulls": "private"}}}
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	waitPullSecrets(t, c, ns, "ci", "regcred-sasel")
	clusterReady(t, c, "sasel", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1")
	if got, _ := pullSecretsOf(bg, c, ns, "web"); len(got) != 0 {
		t.Errorf("unselected ServiceAccount patched: %v", got)
	}
	// The ServiceAccount stops being selected.
	var sa corev1.ServiceAccount
	if err := c.Get(bg, client.ObjectKey{Namespace: ns, Name: "ci"}, &sa); err != nil {
		t.Fatal(err)
	}
	sa.Labels = nil
	if err := c.Update(bg, &sa); err != nil {
		t.Fatal(err)
	}
	waitPullSecrets(t, c, ns, "ci")
	// The Secret stays: the namespace is still selected.
	if _, _, err := secretData(bg, c, ns, "regcred-sasel"); err != nil {
		t.Errorf("Secret removed with the ServiceAccount entry: %v", err)
	}
	deleteAndWait(t, c, cred)
}

// TestBadSourceKeepsCopies: a malformed, missing or wrongly typed source
// sets Ready=False with the reason and leaves every copy as it was.
func TestBadSourceKeepsCopies(t *testing.T) {
	c := startManager(t)
	sel := map[string]string{"regcred-test": "badsource"}
	ns := newNamespace(t, c, "badsource", sel)
	createSA(t, c, ns, "default", nil)
	good := testenv.DockerConfigJSON(t, "quay.io", "robot", "pass-1")
	src := createSource(t, c, regcredNamespace, "badsource-source", good)
	cred := clusterCred("badsource", "badsource-source", sel, "quay.io")
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	waitSecretData(t, c, ns, "regcred-badsource", good)

	// Malformed: bad base64 in auth, which the API server accepts.
	src.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{"quay.io":{"auth":"bm90OmJhc2U2NCEhIQ*"}}}`)
	if err := c.Update(bg, src); err != nil {
		t.Fatal(err)
	}
	obj := clusterReady(t, c, "badsource", metav1.ConditionFalse, "SourceInvalid", "")
	msg := obj.Status.Conditions[0].Message
	if !strings.Contains(msg, `entry "quay.io": field "auth": not valid base64`) || !strings.Contains(msg, "left as they are") {
		t.Errorf("condition message %q", msg)
	}
	waitPullSecrets(t, c, ns, "default", "regcred-badsource")
	if got, _, _ := secretData(bg, c, ns, "regcred-badsource"); string(got) != string(good) {
		t.Errorf("copy changed after a bad source: %s", got)
	}
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		ev, err := eventsFor(ctx, c, "badsource")
		if err != nil {
			return err
		}
		if !strings.Contains(ev, "Warning SourceInvalid") {
			return fmt.Errorf("no SourceInvalid warning Event; events: %s", ev)
		}
		return nil
	})

	// Missing.
	if err := c.Delete(bg, src); err != nil {
		t.Fatal(err)
	}
	clusterReady(t, c, "badsource", metav1.ConditionFalse, "SourceNotFound", "")
	if got, _, _ := secretData(bg, c, ns, "regcred-badsource"); string(got) != string(good) {
		t.Errorf("copy changed after the source was deleted")
	}

	// Wrong type (Opaque).
	opaque := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNamespace, Name: "badsource-source"},
		Data: map[string][]byte{"token": []byte("x")}}
	if err := c.Create(bg, opaque); err != nil {
		t.Fatal(err)
	}
	// Opaque Secrets of regcred's namespace are watched (they may hold
	// cloud keys): regcred looks at once, with no change to the credential.
	obj = clusterReady(t, c, "badsource", metav1.ConditionFalse, "SourceInvalid", "")
	if !strings.Contains(obj.Status.Conditions[0].Message, `secret type "Opaque" is not a registry credential`) {
		t.Errorf("message %q", obj.Status.Conditions[0].Message)
	}

	// Fixed: a valid source again, and the copies follow.
	if err := c.Delete(bg, opaque); err != nil {
		t.Fatal(err)
	}
	fixed := testenv.DockerConfigJSON(t, "quay.io", "robot", "pass-2")
	createSource(t, c, regcredNamespace, "badsource-source", fixed)
	waitSecretData(t, c, ns, "regcred-badsource", fixed)
	clusterReady(t, c, "badsource", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1")
	deleteAndWait(t, c, cred)
}

// TestForeignSecretLeftAlone: a Secret of the same name that regcred does
// not manage is never overwritten or deleted.
func TestForeignSecretLeftAlone(t *testing.T) {
	c := startManager(t)
	sel := map[string]string{"regcred-test": "foreign"}
	ns := newNamespace(t, c, "foreign", sel)
	okNS := newNamespace(t, c, "foreign-ok", sel)
	createSA(t, c, ns, "default", nil)
	mine := testenv.DockerConfigJSON(t, "registry.example.com", "me", "my-own")
	createSource(t, c, ns, "regcred-foreign", mine) // same name as the managed one
	createSource(t, c, regcredNamespace, "foreign-source", testenv.DockerConfigJSON(t, "registry.example.com", "robot", "x"))
	cred := clusterCred("foreign", "foreign-source", sel, "registry.example.com")
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	obj := clusterReady(t, c, "foreign", metav1.ConditionFalse, v1alpha1.ReasonSyncFailed, "1/2")
	if obj.Status.Namespaces.Failed != 1 || len(obj.Status.Failures) != 1 || obj.Status.Failures[0].Namespace != ns ||
		!strings.Contains(obj.Status.Failures[0].Message, "not managed by regcred") {
		t.Errorf("status: %+v", obj.Status)
	}
	got, s, err := secretData(bg, c, ns, "regcred-foreign")
	if err != nil || string(got) != string(mine) || s.Labels[credential.LabelManaged] != "" {
		t.Errorf("foreign Secret touched: %v %s %v", err, got, s.Labels)
	}
	if names, _ := pullSecretsOf(bg, c, ns, "default"); slices.Contains(names, "regcred-foreign") {
		t.Errorf("ServiceAccount points at the foreign Secret: %v", names)
	}
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		ev, err := eventsFor(ctx, c, "foreign")
		if err != nil {
			return err
		}
		if !strings.Contains(ev, "not managed by regcred") {
			return fmt.Errorf("no Event; events: %s", ev)
		}
		return nil
	})
	deleteAndWait(t, c, cred)
	if got, _, err := secretData(bg, c, ns, "regcred-foreign"); err != nil || string(got) != string(mine) {
		t.Errorf("foreign Secret deleted or changed with the credential: %v", err)
	}
	waitSecretGone(t, c, okNS, "regcred-foreign")
}

// TestDriftIsRepaired: edits to and deletion of a managed Secret are undone.
func TestDriftIsRepaired(t *testing.T) {
	c := startManager(t)
	sel := map[string]string{"regcred-test": "drift"}
	ns := newNamespace(t, c, "drift", sel)
	data := testenv.DockerConfigJSON(t, "registry.example.com", "robot", "p")
	createSource(t, c, regcredNamespace, "drift-source", data)
	cred := clusterCred("drift", "drift-source", sel, "registry.example.com")
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	waitSecretData(t, c, ns, "regcred-drift", data)
	_, s, _ := secretData(bg, c, ns, "regcred-drift")
	s.Data[corev1.DockerConfigJsonKey] = testenv.DockerConfigJSON(t, "evil.example.com", "x", "y")
	if err := c.Update(bg, s); err != nil {
		t.Fatal(err)
	}
	waitSecretData(t, c, ns, "regcred-drift", data)
	if err := c.Delete(bg, s); err != nil {
		t.Fatal(err)
	}
	waitSecretData(t, c, ns, "regcred-drift", data)
	deleteAndWait(t, c, cred)
}

// TestRegistryCredentialStaysInItsNamespace: a tenant's credential with a
// basic-auth source acts in its own namespace only.
func TestRegistryCredentialStaysInItsNamespace(t *testing.T) {
	c := startManager(t)
	tenant := newNamespace(t, c, "tenant", nil)
	neighbour := newNamespace(t, c, "neighbour", nil)
	createSA(t, c, tenant, "default", nil)
	createSA(t, c, neighbour, "default", nil)
	basic := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "robot"}, Type: corev1.SecretTypeBasicAuth,
		Data: map[string][]byte{"username": []byte("robot$team"), "password": []byte("tenant-pass")}}
	if err := c.Create(bg, basic); err != nil {
		t.Fatal(err)
	}
	rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "harbor"}}
	rc.Spec.Registries = []string{"harbor.example.com/team", "*.mirror.example.com:5000"}
	rc.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "robot"}
	if err := c.Create(bg, rc); err != nil {
		t.Fatal(err)
	}
	want := []byte(`{"auths":{"*.mirror.example.com:5000":{"username":"robot$team","password":"tenant-pass","auth":"cm9ib3QkdGVhbTp0ZW5hbnQtcGFzcw=="},` +
		`"harbor.example.com/team":{"username":"robot$team","password":"tenant-pass","auth":"cm9ib3QkdGVhbTp0ZW5hbnQtcGFzcw=="}}}`)
	waitSecretData(t, c, tenant, "regcred-harbor", want)
	waitPullSecrets(t, c, tenant, "default", "regcred-harbor")
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(rc), rc); err != nil {
			return err
		}
		if rc.Status.Namespaces.Summary != "1/1" || len(rc.Status.Conditions) == 0 || rc.Status.Conditions[0].Status != metav1.ConditionTrue {
			return fmt.Errorf("status %+v", rc.Status)
		}
		return nil
	})
	if _, _, err := secretData(bg, c, neighbour, "regcred-harbor"); err == nil {
		t.Error("a RegistryCredential reached another namespace")
	}
	if got, _ := pullSecretsOf(bg, c, neighbour, "default"); len(got) != 0 {
		t.Errorf("neighbour ServiceAccount patched: %v", got)
	}
	// Rotation of a basic-auth source.
	basic.Data["password"] = []byte("tenant-pass-2")
	if err := c.Update(bg, basic); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		got, _, err := secretData(ctx, c, tenant, "regcred-harbor")
		if err != nil {
			return err
		}
		if !strings.Contains(string(got), "tenant-pass-2") {
			return fmt.Errorf("not rotated")
		}
		return nil
	})
	deleteAndWait(t, c, rc)
	waitSecretGone(t, c, tenant, "regcred-harbor")
	waitPullSecrets(t, c, tenant, "default")
}

// TestConcurrentServiceAccountEdits: another writer keeps editing the same
// ServiceAccount while regcred patches it; nobody's entries are lost.
func TestConcurrentServiceAccountEdits(t *testing.T) {
	c := startManager(t)
	sel := map[string]string{"regcred-test": "concurrent"}
	ns := newNamespace(t, c, "concurrent", sel)
	createSA(t, c, ns, "default", nil)
	var creds []*v1alpha1.ClusterRegistryCredential
	for i := range 3 {
		name := fmt.Sprintf("concurrent-%d", i)
		createSource(t, c, regcredNamespace, name+"-source", testenv.DockerConfigJSON(t, fmt.Sprintf("r%d.example.com", i), "u", "p"))
		cred := clusterCred(name, name+"-source", sel, fmt.Sprintf("r%d.example.com", i))
		creds = append(creds, cred)
	}
	done := make(chan error)
	go func() {
		// The other writer: adds its own entries one by one, with
		// read-modify-write and retries on conflict, as kubectl edit would.
		for i := range 20 {
			for {
				var sa corev1.ServiceAccount
				if err := c.Get(bg, client.ObjectKey{Namespace: ns, Name: "default"}, &sa); err != nil {
					done <- err
					return
				}
				sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: fmt.Sprintf("other-%02d", i)})
				err := c.Update(bg, &sa)
				if err == nil {
					break
				}
				if !strings.Contains(err.Error(), "the object has been modified") {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	for _, cred := range creds {
		if err := c.Create(bg, cred); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		got, err := pullSecretsOf(ctx, c, ns, "default")
		if err != nil {
			return err
		}
		for i := range 20 {
			if !slices.Contains(got, fmt.Sprintf("other-%02d", i)) {
				return fmt.Errorf("lost other-%02d: %v", i, got)
			}
		}
		for i := range 3 {
			if !slices.Contains(got, fmt.Sprintf("regcred-concurrent-%d", i)) {
				return fmt.Errorf("missing regcred-concurrent-%d: %v", i, got)
			}
		}
		if len(got) != 23 {
			return fmt.Errorf("duplicates: %v", got)
		}
		return nil
	})
	for _, cred := range creds {
		deleteAndWait(t, c, cred)
	}
	got, _ := pullSecretsOf(bg, c, ns, "default")
	if len(got) != 20 || slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "regcred-") }) {
		t.Errorf("after cleanup: %v", got)
	}
}

// TestExcludedNamespaces: kube-system and regcred's own namespace are never
// synced to, nor are listed exclusions.
func TestExcludedNamespaces(t *testing.T) {
	c := startManager(t)
	excluded := newNamespace(t, c, "excluded", map[string]string{"regcred-test": "excl"})
	included := newNamespace(t, c, "included", map[string]string{"regcred-test": "excl"})
	createSource(t, c, regcredNamespace, "excl-source", testenv.DockerConfigJSON(t, "r.example.com", "u", "p"))
	cred := clusterCred("excl", "excl-source", nil, "r.example.com")
	cred.Spec.ExcludeNamespaces = []string{excluded}
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	waitSecretData(t, c, included, "regcred-excl", testenv.DockerConfigJSON(t, "r.example.com", "u", "p"))
	for _, ns := range []string{excluded, "kube-system", "kube-public", "kube-node-lease", regcredNamespace} {
		if _, _, err := secretData(bg, c, ns, "regcred-excl"); err == nil {
			t.Errorf("excluded namespace %s got the Secret", ns)
		}
	}
	deleteAndWait(t, c, cred)
}

// TestUnrelatedSecretsAreNotCached: the running manager's cache holds
// regcred's own Secrets only, without managedFields, so thousands of
// others cost it no memory.
func TestUnrelatedSecretsAreNotCached(t *testing.T) {
	c := startManager(t)
	sel := map[string]string{"regcred-test": "unrelated"}
	ns := newNamespace(t, c, "unrelated", sel)
	opaque := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-config"}, Data: map[string][]byte{"k": []byte("v")}}
	if err := c.Create(bg, opaque); err != nil {
		t.Fatal(err)
	}
	// A registry Secret that is no source of any credential.
	createSource(t, c, ns, "someone-elses", testenv.DockerConfigJSON(t, "registry.example.com", "u", "p"))
	createSource(t, c, regcredNamespace, "unrelated-source", testenv.DockerConfigJSON(t, "registry.example.com", "robot", "p"))
	cred := clusterCred("unrelated", "unrelated-source", sel, "registry.example.com")
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	cache := running.GetCache()
	// The managed Secret reaches the cache; the others, created before it,
	// never do.
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		return cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: "regcred-unrelated"}, &corev1.Secret{})
	})
	var list corev1.SecretList
	if err := cache.List(bg, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != "regcred-unrelated" {
		var names []string
		for _, s := range list.Items {
			names = append(names, s.Name)
		}
		t.Errorf("cached Secrets in %s: %v, want only regcred-unrelated", ns, names)
	}
	if err := cache.List(bg, &list); err != nil {
		t.Fatal(err)
	}
	for _, item := range list.Items {
		if item.Labels[credential.LabelManaged] != "true" {
			t.Errorf("cache holds an unrelated Secret %s/%s", item.Namespace, item.Name)
		}
		if item.ManagedFields != nil {
			t.Errorf("cache keeps managedFields of %s/%s", item.Namespace, item.Name)
		}
	}
	deleteAndWait(t, c, cred)
}

// TestTerminatingNamespaceIsLeftAlone: a namespace being deleted loses
// its Secrets and ServiceAccounts to the namespace controller; regcred
// writes nothing more to it (each write would be wasted, at scale a third
// of a churn's writes) and stops counting it. The harness runs no
// namespace controller, so the namespace stays Terminating.
func TestTerminatingNamespaceIsLeftAlone(t *testing.T) {
	c := startManager(t)
	sel := map[string]string{"regcred-test": "terminating"}
	stays := newNamespace(t, c, "term-stays", sel)
	goes := newNamespace(t, c, "term-goes", sel)
	for _, ns := range []string{stays, goes} {
		createSA(t, c, ns, "default", nil)
	}
	v1 := testenv.DockerConfigJSON(t, "harbor.example.com", "robot", "first-pass")
	src := createSource(t, c, regcredNamespace, "terminating-source", v1)
	if err := c.Create(bg, clusterCred("terminating", "terminating-source", sel, "harbor.example.com")); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{stays, goes} {
		waitSecretData(t, c, ns, "regcred-terminating", v1)
		waitPullSecrets(t, c, ns, "default", "regcred-terminating")
	}
	clusterReady(t, c, "terminating", metav1.ConditionTrue, v1alpha1.ReasonSynced, "2/2")
	_, before, err := secretData(bg, c, goes, "regcred-terminating")
	if err != nil {
		t.Fatal(err)
	}

	if err := c.Delete(bg, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: goes}}); err != nil {
		t.Fatal(err)
	}
	clusterReady(t, c, "terminating", metav1.ConditionTrue, v1alpha1.ReasonSynced, "1/1")
	// A rotation reaches the namespace that stays; by then the deleted
	// one's events were handled long ago.
	v2 := testenv.DockerConfigJSON(t, "harbor.example.com", "robot", "second-pass")
	src.Data[corev1.DockerConfigJsonKey] = v2
	if err := c.Update(bg, src); err != nil {
		t.Fatal(err)
	}
	waitSecretData(t, c, stays, "regcred-terminating", v2)
	_, after, err := secretData(bg, c, goes, "regcred-terminating")
	if err != nil {
		t.Fatalf("the Terminating namespace's Secret: %v (regcred deleted it)", err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("the Terminating namespace's Secret was written: resourceVersion %s, was %s", after.ResourceVersion, before.ResourceVersion)
	}
	waitPullSecrets(t, c, goes, "default", "regcred-terminating")
}
