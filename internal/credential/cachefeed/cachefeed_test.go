package cachefeed_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/credential/cachefeed"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/controlplane"
	"regcred.dev/regcred/internal/testenv/testsuite"
)

var suite = testsuite.New(controlplane.WithSchemeAdder(v1alpha1.AddToScheme))

func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }

// TestFeedFollowsTheAPIServer: against a real API server, the catalogue
// holds what existed before the feed started once it says Synced, then
// follows creations, spec changes and deletions; its listeners hear of
// each after the catalogue answers with it, and not of status writes.
func TestFeedFollowsTheAPIServer(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	cp := suite.ControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := cp.Client
	early := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "feed-early"}}
	early.Spec.Registries = []string{"early.example.com"}
	early.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "s"}
	if err := c.Create(ctx, early); err != nil {
		t.Fatal(err)
	}

	ca, err := cache.New(cp.Config, cache.Options{Scheme: cp.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	cat := credential.NewCatalogue("regcred-system")
	var mu sync.Mutex
	var heard []string
	cat.OnChange(func(k credential.Key) {
		mu.Lock()
		defer mu.Unlock()
		heard = append(heard, fmt.Sprintf("%s present=%t", k.Name, cat.Get(k) != nil))
	})
	if err := cachefeed.Start(ctx, ca, cat); err != nil {
		t.Fatal(err)
	}
	go func() { _ = ca.Start(ctx) }()
	select {
	case <-cat.Synced():
	case <-ctx.Done():
		t.Fatal("the catalogue never synced")
	}
	if cat.Get(credential.Key{Kind: credential.KindCluster, Name: "feed-early"}) == nil {
		t.Fatal("Synced before the credential that existed at the start was in the catalogue")
	}

	tenant := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "feed-tenant"}}
	tenant.Spec.Registries = []string{"ghcr.io/acme"}
	tenant.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "s"}
	if err := c.Create(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	key := credential.Key{Kind: credential.KindNamespaced, Namespace: "default", Name: "feed-tenant"}
	testenv.Eventually(t, time.Minute, testenv.Condition("the new RegistryCredential in the catalogue", func() bool {
		e := cat.Get(key)
		return e != nil && slices.Equal(e.Spec.Registries, []string{"ghcr.io/acme"})
	}))
	compiles := cat.Compiles()

	tenant.Status.SecretName = "status-only"
	if err := c.Status().Update(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, testenv.Condition("the status write seen", func() bool {
		e := cat.Get(key)
		return e != nil && e.Status.SecretName == "status-only"
	}))
	if n := cat.Compiles() - compiles; n != 0 {
		t.Errorf("a status write compiled the credential %d times, want 0", n)
	}

	tenant.Spec.Registries = []string{"quay.io/acme"}
	if err := c.Update(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, testenv.Condition("the new spec compiled", func() bool {
		e := cat.Get(key)
		return e != nil && slices.Equal(e.Spec.Registries, []string{"quay.io/acme"})
	}))
	if err := c.Delete(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, testenv.Condition("the deleted credential gone", func() bool {
		return cat.Get(key) == nil
	}))

	mu.Lock()
	defer mu.Unlock()
	want := []string{"feed-early present=true", "feed-tenant present=true", "feed-tenant present=true", "feed-tenant present=false"}
	if !slices.Equal(heard, want) {
		t.Errorf("listeners heard %v, want %v", heard, want)
	}
}
