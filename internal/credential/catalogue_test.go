package credential

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/keyring"
)

func clusterCred(name string, registries ...string) *v1alpha1.ClusterRegistryCredential {
	c := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-c-" + name), Generation: 1}}
	c.Spec.Registries = registries
	return c
}

func tenantCred(namespace, name string, registries ...string) *v1alpha1.RegistryCredential {
	c := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID("uid-" + namespace + "-" + name), Generation: 1}}
	c.Spec.Registries = registries
	return c
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func keys(entries []*Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Key.String()
	}
	return out
}

func target(t *testing.T, image string) keyring.Target {
	t.Helper()
	named, err := keyring.ParseImage(image)
	if err != nil {
		t.Fatal(err)
	}
	return keyring.ParseTarget(named.Name())
}

// TestCatalogueNotRecompiledForStatusOnlyUpdates: status writes (every
// token refresh, every namespace count) are most of a credential's
// updates and change nothing the catalogue compiles; spec (generation),
// labels, annotations and deletion do.
func TestCatalogueNotRecompiledForStatusOnlyUpdates(t *testing.T) {
	cat := NewCatalogue("regcred-system")
	base := clusterCred("c", "harbor.internal")
	base.Labels, base.Annotations = map[string]string{"a": "1"}, map[string]string{"n": "1"}
	base.Generation = 3
	cat.Put(base)
	recompiles := func(updated *v1alpha1.ClusterRegistryCredential) int64 {
		cat.Put(base)
		before := cat.Compiles()
		cat.Put(updated)
		return cat.Compiles() - before
	}

	status := base.DeepCopy()
	status.ResourceVersion = "2"
	status.Status.Namespaces.Synced = 40
	status.Status.Token = &v1alpha1.TokenStatus{RefreshedAt: &metav1.Time{Time: time.Now()}}
	var n int64
	for range 100 { // a hundred token refreshes and namespace counts
		before := cat.Compiles()
		cat.Put(status)
		n += cat.Compiles() - before
	}
	if n != 0 {
		t.Errorf("status-only updates recompiled the credential %d times, want 0", n)
	}
	if got := cat.Get(Key{Kind: KindCluster, Name: "c"}); got.Status.Namespaces.Synced != 40 {
		t.Errorf("the entry after a status write shows synced=%d, want the new status (40)", got.Status.Namespaces.Synced)
	}

	spec := base.DeepCopy()
	spec.Generation = 4
	labels := base.DeepCopy()
	labels.Labels["a"] = "2"
	annotations := base.DeepCopy()
	annotations.Annotations = nil
	deleting := base.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	for name, updated := range map[string]*v1alpha1.ClusterRegistryCredential{"spec": spec, "labels": labels, "annotations": annotations, "deletion": deleting} {
		if n := recompiles(updated); n != 1 {
			t.Errorf("a %s change recompiled the credential %d times, want 1", name, n)
		}
	}
}

func TestCatalogueQuestions(t *testing.T) {
	cat := NewCatalogue("regcred-system")
	teamB := clusterCred("team-b", "quay.io")
	teamB.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}
	excluding := clusterCred("hub", "docker.io")
	excluding.Spec.ExcludeNamespaces = []string{"apps"}
	gone := clusterCred("gone", "ghcr.io")
	gone.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	for _, o := range []any{clusterCred("zeta", "ghcr.io"), clusterCred("harbor", "harbor.internal"), teamB, excluding, gone,
		tenantCred("apps", "mine", "ghcr.io/acme"), tenantCred("other", "theirs", "ghcr.io")} {
		cat.Put(o)
	}
	apps := namespace("apps", map[string]string{"team": "a"})

	if got, want := keys(cat.Candidates("apps")), []string{"ClusterRegistryCredential/gone", "ClusterRegistryCredential/harbor",
		"ClusterRegistryCredential/hub", "ClusterRegistryCredential/team-b", "ClusterRegistryCredential/zeta", "RegistryCredential/apps/mine"}; !slices.Equal(got, want) {
		t.Errorf("Candidates(apps) = %v, want %v", got, want)
	}
	if got, want := keys(cat.Acting(apps)), []string{"ClusterRegistryCredential/harbor", "ClusterRegistryCredential/zeta", "RegistryCredential/apps/mine"}; !slices.Equal(got, want) {
		t.Errorf("Acting(apps) = %v, want %v", got, want)
	}
	if got, want := keys(cat.Acting(namespace("b", map[string]string{"team": "b"}))), []string{"ClusterRegistryCredential/harbor",
		"ClusterRegistryCredential/hub", "ClusterRegistryCredential/team-b", "ClusterRegistryCredential/zeta"}; !slices.Equal(got, want) {
		t.Errorf("Acting(b) = %v, want %v", got, want)
	}
	if got := cat.Acting(namespace("regcred-system", nil)); len(got) != 0 {
		t.Errorf("Acting(regcred-system) = %v, want none", keys(got))
	}
	// Covering ignores scope (the doctor explains it) but not deletion.
	if got, want := keys(cat.Covering("apps", target(t, "ghcr.io/acme/app:1"))), []string{"ClusterRegistryCredential/zeta", "RegistryCredential/apps/mine"}; !slices.Equal(got, want) {
		t.Errorf("Covering(apps, ghcr.io/acme/app) = %v, want %v", got, want)
	}
	if got, want := keys(cat.Covering("apps", target(t, "nginx"))), []string{"ClusterRegistryCredential/hub"}; !slices.Equal(got, want) {
		t.Errorf("Covering(apps, nginx) = %v, want %v", got, want)
	}
	if got, want := cat.MatchingKeys("apps", target(t, "ghcr.io/acme/app")), []string{"ghcr.io", "ghcr.io/acme"}; !slices.Equal(got, want) {
		t.Errorf("MatchingKeys(apps, ghcr.io/acme/app) = %v, want %v", got, want)
	}
	// Namespace other's tenant key "ghcr.io" and apps' "ghcr.io/acme" say
	// nothing of a third namespace's pulls.
	if got, want := cat.MatchingKeys("third", target(t, "ghcr.io/acme/app")), []string{"ghcr.io"}; !slices.Equal(got, want) {
		t.Errorf("MatchingKeys(third, ghcr.io/acme/app) = %v, want %v (the cluster credential zeta only)", got, want)
	}

	cat.Delete(tenantCred("apps", "mine"))
	if got := cat.Get(Key{Kind: KindNamespaced, Namespace: "apps", Name: "mine"}); got != nil {
		t.Errorf("a deleted credential is still in the catalogue: %v", got.Key)
	}
	if got := keys(cat.Candidates("apps")); slices.Contains(got, "RegistryCredential/apps/mine") {
		t.Errorf("Candidates(apps) after the delete = %v", got)
	}
}

func TestCatalogueForServiceAccount(t *testing.T) {
	cat := NewCatalogue("regcred-system")
	all := clusterCred("all", "a.example.com")
	def := clusterCred("default-only", "b.example.com")
	def.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsDefault
	none := clusterCred("none", "c.example.com")
	none.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
	bots := tenantCred("apps", "bots", "d.example.com")
	bots.Spec.ServiceAccounts = v1alpha1.ServiceAccountSelection{Mode: v1alpha1.ServiceAccountsSelector,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "bot"}}}
	elsewhere := tenantCred("other", "x", "e.example.com")
	for _, o := range []any{all, def, none, bots, elsewhere} {
		cat.Put(o)
	}
	apps := namespace("apps", nil)
	sa := func(name string, labels map[string]string) *corev1.ServiceAccount {
		return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name, Labels: labels}}
	}
	for _, tc := range []struct {
		sa   *corev1.ServiceAccount
		want []string
	}{
		{sa("default", nil), []string{"ClusterRegistryCredential/all", "ClusterRegistryCredential/default-only"}},
		{sa("builder", map[string]string{"role": "bot"}), []string{"ClusterRegistryCredential/all", "RegistryCredential/apps/bots"}},
		{sa("web", nil), []string{"ClusterRegistryCredential/all"}},
	} {
		if got := keys(cat.ForServiceAccount(apps, tc.sa)); !slices.Equal(got, tc.want) {
			t.Errorf("ForServiceAccount(apps, %s) = %v, want %v", tc.sa.Name, got, tc.want)
		}
	}
}

func TestCatalogueInvalidObjects(t *testing.T) {
	cat := NewCatalogue("regcred-system")
	bad := clusterCred("bad-selector", "ghcr.io")
	bad.Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Nope"}}}
	badSA := clusterCred("bad-sa", "ghcr.io")
	badSA.Spec.ServiceAccounts = v1alpha1.ServiceAccountSelection{Mode: v1alpha1.ServiceAccountsSelector,
		Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Nope"}}}}
	badKey := clusterCred("bad-key", "ghcr.io", "harbor.internal:%zz")
	badMirror := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "m", Generation: 1}}
	badMirror.Spec.Mirrors = []v1alpha1.MirrorRule{{Source: "", Mirror: "x"}}
	for _, o := range []any{bad, badSA, badKey, badMirror} {
		cat.Put(o)
	}
	apps := namespace("apps", nil)
	if ok, err := cat.Get(Key{Kind: KindCluster, Name: "bad-selector"}).Applies(apps); ok || err == nil || !strings.Contains(err.Error(), "namespaceSelector") {
		t.Errorf("an invalid namespaceSelector: Applies = %t, %v; want false and its error", ok, err)
	}
	if ok, err := cat.Get(Key{Kind: KindCluster, Name: "bad-sa"}).SelectsServiceAccount(&corev1.ServiceAccount{}); ok || err == nil {
		t.Errorf("an invalid serviceAccounts.selector: SelectsServiceAccount = %t, %v; want false and an error", ok, err)
	}
	if got := keys(cat.Acting(apps)); !slices.Equal(got, []string{"ClusterRegistryCredential/bad-key", "ClusterRegistryCredential/bad-sa"}) {
		t.Errorf("Acting = %v: an invalid selector acts nowhere, the rest still act", got)
	}
	if !cat.Get(Key{Kind: KindCluster, Name: "bad-key"}).Matches(target(t, "ghcr.io/a/b")) {
		t.Error("a credential with one invalid key no longer matches its valid one")
	}
	problems := strings.Join(cat.Problems(), "\n")
	for _, want := range []string{"ClusterRegistryCredential bad-selector: namespaceSelector", "ClusterRegistryCredential bad-key: registry keys", "ClusterImageMirror m:"} {
		if !strings.Contains(problems, want) {
			t.Errorf("Problems() = %q, want a line with %q", problems, want)
		}
	}
	if key, rules := cat.Mirrors(apps); key != "" || rules != nil {
		t.Errorf("an invalid mirror applies: %q", key)
	}
	huge := clusterCred("huge", "ghcr.io")
	huge.Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOperator(strings.Repeat("\x1b[31mX", 4000))}}}
	cat.Put(huge)
	for _, p := range cat.Problems() {
		if len(p) > 1100 || strings.Contains(p, "\x1b") {
			t.Errorf("a problem line is %d bytes or holds an escape: what a tenant wrote reaches the log unbounded", len(p))
		}
	}
	cat.Delete(huge)
	fixed := clusterCred("bad-selector", "ghcr.io")
	fixed.Generation = 2
	cat.Put(fixed)
	if strings.Contains(strings.Join(cat.Problems(), "\n"), "bad-selector") {
		t.Errorf("a fixed credential is still a problem: %v", cat.Problems())
	}
}

func TestCatalogueMirrors(t *testing.T) {
	cat := NewCatalogue("regcred-system")
	mirrorOf := func(name string, gen int64, selector map[string]string, source, to string) *v1alpha1.ClusterImageMirror {
		m := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: gen}}
		m.Spec.Mirrors = []v1alpha1.MirrorRule{{Source: source, Mirror: to}}
		if selector != nil {
			m.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: selector}
		}
		return m
	}
	cat.Put(mirrorOf("all", 1, nil, "docker.io", "harbor.internal/hub"))
	cat.Put(mirrorOf("team-a", 1, map[string]string{"team": "a"}, "quay.io", "harbor.internal/quay"))
	rewrite := func(rulesKey string, ns *corev1.Namespace, image string) (string, string) {
		key, rules := cat.Mirrors(ns)
		if rules == nil {
			return key, image
		}
		out, _, _, err := rules.Rewrite(image)
		if err != nil {
			t.Fatal(err)
		}
		return key, out
	}
	a, b := namespace("a", map[string]string{"team": "a"}), namespace("b", nil)
	keyA, got := rewrite("", a, "quay.io/x/y:1")
	if got != "harbor.internal/quay/x/y:1" {
		t.Errorf("team a: quay.io rewritten to %q", got)
	}
	if _, got := rewrite("", a, "nginx:1"); got != "harbor.internal/hub/library/nginx:1" {
		t.Errorf("team a: nginx rewritten to %q (both sets merge)", got)
	}
	keyB, got := rewrite("", b, "quay.io/x/y:1")
	if got != "quay.io/x/y:1" || keyA == keyB {
		t.Errorf("namespace b: quay.io rewritten to %q with key %q (team a's %q); want it left and another key", got, keyB, keyA)
	}
	if k, _ := cat.Mirrors(a); k != keyA {
		t.Errorf("the same combination has a new key: %q, then %q", keyA, k)
	}
	cat.Put(mirrorOf("team-a", 2, map[string]string{"team": "a"}, "quay.io", "harbor.internal/quay2"))
	keyA2, got := rewrite("", a, "quay.io/x/y:1")
	if got != "harbor.internal/quay2/x/y:1" || keyA2 == keyA {
		t.Errorf("after a mirror changed: %q with key %q (before %q); want the new rule and a new key", got, keyA2, keyA)
	}
	cat.Delete(mirrorOf("all", 1, nil, "", ""))
	if _, got := rewrite("", b, "nginx:1"); got != "nginx:1" {
		t.Errorf("a deleted mirror still rewrites: %q", got)
	}
}

// TestCatalogueOnChange: a listener hears of a creation, a finalizer, a
// new spec and a deletion when the catalogue already answers with them,
// and not of a status write or a label (the namespace controller's
// triggers before the catalogue).
func TestCatalogueOnChange(t *testing.T) {
	cat := NewCatalogue("regcred-system")
	var heard []string
	cat.OnChange(func(k Key) {
		present := cat.Get(k) != nil
		heard = append(heard, fmt.Sprintf("%s present=%t", k, present))
	})
	c := tenantCred("apps", "mine", "ghcr.io")
	cat.Put(c)
	status := c.DeepCopy()
	status.Status.SecretName = "x"
	cat.Put(status)
	labelled := status.DeepCopy()
	labelled.Labels = map[string]string{"team": "a"}
	cat.Put(labelled)
	finalized := labelled.DeepCopy()
	finalized.Finalizers = []string{Finalizer}
	cat.Put(finalized)
	spec := finalized.DeepCopy()
	spec.Generation = 2
	cat.Put(spec)
	cat.Delete(c)
	want := []string{"RegistryCredential/apps/mine present=true", "RegistryCredential/apps/mine present=true",
		"RegistryCredential/apps/mine present=true", "RegistryCredential/apps/mine present=false"}
	if !slices.Equal(heard, want) {
		t.Errorf("heard %v, want %v", heard, want)
	}
	select {
	case <-cat.Synced():
		t.Error("Synced before MarkSynced")
	default:
	}
	cat.MarkSynced()
	cat.MarkSynced()
	<-cat.Synced()
}

// TestCatalogueConcurrent puts and reads from many goroutines; the race
// detector is the judge.
func TestCatalogueConcurrent(t *testing.T) {
	cat := NewCatalogue("regcred-system")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				c := tenantCred(fmt.Sprintf("ns-%d", i%10), fmt.Sprintf("c-%d", w), "ghcr.io")
				c.Generation = int64(i + 1)
				cat.Put(c)
				cat.Put(clusterCred(fmt.Sprintf("c-%d", i%7), "docker.io"))
				if i%5 == 0 {
					cat.Delete(c)
				}
			}
		})
		wg.Go(func() {
			for i := range 200 {
				ns := namespace(fmt.Sprintf("ns-%d", i%10), nil)
				for _, e := range cat.Acting(ns) {
					_ = e.SecretName()
				}
				cat.Covering(ns.Name, target(t, "ghcr.io/a/b"))
				cat.MatchingKeys(ns.Name, target(t, "nginx"))
				cat.Mirrors(ns)
			}
		})
	}
	wg.Wait()
	if got := len(cat.Candidates("ns-0")); got < 7 {
		t.Errorf("Candidates(ns-0) has %d entries, want the 7 cluster credentials at least", got)
	}
}
