package controller_test

import (
	"context"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/cache"

	"regcred.dev/regcred/internal/controller"
	"regcred.dev/regcred/internal/manager"
	"regcred.dev/regcred/internal/testenv"
)

func newManagerCache(t *testing.T, cp *testenv.ControlPlane) cache.Cache {
	t.Helper()
	scheme, err := manager.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	opts := controller.CacheOptions()
	opts.Scheme = scheme
	c, err := cache.New(cp.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	return c
}
