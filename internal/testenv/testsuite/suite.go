// Package testsuite composes the harness's parts for one test binary: a
// Suite shares one control plane, one real cluster and one registry per
// auth mode across the tests of a package, starts each on first use, and
// stops what started when the tests end, are interrupted, or near their
// timeout (a real cluster must give the host back).
package testsuite

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/controlplane"
	"regcred.dev/regcred/internal/testenv/testcluster"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// Suite shares one control plane and one registry per auth mode across the
// tests of a package. Parts start on first use, so a package whose selected
// tests need none of them starts nothing; Run stops whatever started.
//
//	var suite = testsuite.New()
//	func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }
type Suite struct {
	opts []controlplane.Option
	// clusterOpts says how the cluster starts; called once, on first use.
	clusterOpts func() ([]testcluster.Option, error)

	cpOnce sync.Once
	cp     *controlplane.ControlPlane
	cpErr  error

	clusterOnce sync.Once
	cluster     *testcluster.Cluster
	clusterErr  error

	mu         sync.Mutex
	registries map[testregistry.AuthMode]*testregistry.Registry
	onStop     []func()
}

// ClusterOptions makes the cluster start with what f returns, called once
// when a test first asks for the cluster (before Run).
func (s *Suite) ClusterOptions(f func() ([]testcluster.Option, error)) { s.clusterOpts = f }

// OnStop registers f to run after the tests and before the parts stop
// (say, to stop a manager that talks to the control plane).
func (s *Suite) OnStop(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onStop = append(s.onStop, f)
}

// New returns a Suite whose control plane starts with opts.
func New(opts ...controlplane.Option) *Suite {
	return &Suite{opts: opts, registries: map[testregistry.AuthMode]*testregistry.Registry{}}
}

// Run runs the package's tests and then stops every part that was started.
// A real cluster changes the host, so it is also stopped when the tests are
// interrupted (SIGINT, SIGTERM) and shortly before `go test -timeout` would
// kill the test binary without running any cleanup.
func (s *Suite) Run(m *testing.M) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "testenv: %v: stopping what the tests started\n", sig)
		_ = s.stop()
		os.Exit(2)
	}()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > time.Minute {
			timer := time.AfterFunc(d-45*time.Second, func() {
				fmt.Fprintf(os.Stderr, "testenv: the test timeout (%s) is near: stopping the cluster so the host is restored\n", d)
				s.stopCluster()
			})
			defer timer.Stop()
		}
	}
	code := m.Run()
	if err := s.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stop: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// ControlPlane returns the package's control plane, starting it on first use.
// Missing binaries skip the test locally and fail it under CI (Required); any
// other start failure fails the test.
func (s *Suite) ControlPlane(t testing.TB) *controlplane.ControlPlane {
	t.Helper()
	s.cpOnce.Do(func() {
		if err := controlplane.CheckAssets(); err != nil {
			s.cpErr = err
			return
		}
		s.cp, s.cpErr = controlplane.Start(s.opts...)
	})
	if s.cpErr != nil {
		if controlplane.CheckAssets() != nil && !testenv.Required() {
			t.Skipf("control plane unavailable: %v", s.cpErr)
		}
		t.Fatalf("control plane: %v", s.cpErr)
	}
	return s.cp
}

// Cluster returns the package's real cluster (a kubelet node and the
// controllers), starting it on first use. A machine that cannot run one
// (not root, no cgroups, binaries missing) skips the test locally and fails
// it under CI (Required), saying why.
func (s *Suite) Cluster(t testing.TB) *testcluster.Cluster {
	t.Helper()
	s.clusterOnce.Do(func() {
		if err := testcluster.Check(); err != nil {
			s.clusterErr = err
			return
		}
		var opts []testcluster.Option
		if s.clusterOpts != nil {
			if opts, s.clusterErr = s.clusterOpts(); s.clusterErr != nil {
				return
			}
		}
		c, err := testcluster.Start(opts...)
		s.mu.Lock()
		s.cluster, s.clusterErr = c, err
		s.mu.Unlock()
	})
	if s.clusterErr != nil {
		if testcluster.Check() != nil && !testenv.Required() {
			t.Skipf("real cluster unavailable: %v", s.clusterErr)
		}
		t.Fatalf("real cluster: %v", s.clusterErr)
	}
	return s.cluster
}

func (s *Suite) stopCluster() {
	s.mu.Lock()
	c := s.cluster
	s.cluster = nil
	s.mu.Unlock()
	if c != nil {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stop cluster: %v\n", err)
		}
	}
}

// Registry returns the package's registry in the given auth mode, starting it
// on first use.
func (s *Suite) Registry(t testing.TB, mode testregistry.AuthMode) *testregistry.Registry {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.registries[mode]; ok {
		return r
	}
	r, err := testregistry.Start(mode)
	if err != nil {
		t.Fatalf("start %s registry: %v", mode, err)
	}
	s.registries[mode] = r
	return r
}

func (s *Suite) stop() error {
	var firstErr error
	s.mu.Lock()
	onStop := s.onStop
	s.onStop = nil
	s.mu.Unlock()
	for i := len(onStop) - 1; i >= 0; i-- {
		onStop[i]()
	}
	s.mu.Lock()
	for _, r := range s.registries {
		r.Close()
	}
	s.registries = map[testregistry.AuthMode]*testregistry.Registry{}
	s.mu.Unlock()
	s.mu.Lock()
	cluster := s.cluster
	s.cluster = nil
	s.mu.Unlock()
	if cluster != nil {
		firstErr = cluster.Stop()
	}
	if s.cp != nil {
		if err := s.cp.Stop(); err != nil && firstErr == nil {
			firstErr = err
		}
		s.cp = nil
	}
	return firstErr
}
