package testenv

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// Suite shares one control plane and one registry per auth mode across the
// tests of a package. Parts start on first use, so a package whose selected
// tests need none of them starts nothing; Run stops whatever started.
//
//	var suite = testenv.NewSuite()
//	func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }
type Suite struct {
	opts []ControlPlaneOption

	cpOnce sync.Once
	cp     *ControlPlane
	cpErr  error

	mu         sync.Mutex
	registries map[AuthMode]*Registry
	onStop     []func()
}

// OnStop registers f to run after the tests and before the parts stop
// (say, to stop a manager that talks to the control plane).
func (s *Suite) OnStop(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onStop = append(s.onStop, f)
}

// NewSuite returns a Suite whose control plane starts with opts.
func NewSuite(opts ...ControlPlaneOption) *Suite {
	return &Suite{opts: opts, registries: map[AuthMode]*Registry{}}
}

// Run runs the package's tests and then stops every part that was started.
func (s *Suite) Run(m *testing.M) int {
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
func (s *Suite) ControlPlane(t testing.TB) *ControlPlane {
	t.Helper()
	s.cpOnce.Do(func() {
		if err := CheckAssets(); err != nil {
			s.cpErr = err
			return
		}
		s.cp, s.cpErr = StartControlPlane(s.opts...)
	})
	if s.cpErr != nil {
		if CheckAssets() != nil && !Required() {
			t.Skipf("control plane unavailable: %v", s.cpErr)
		}
		t.Fatalf("control plane: %v", s.cpErr)
	}
	return s.cp
}

// Registry returns the package's registry in the given auth mode, starting it
// on first use.
func (s *Suite) Registry(t testing.TB, mode AuthMode) *Registry {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.registries[mode]; ok {
		return r
	}
	r, err := StartRegistry(mode)
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
	s.registries = map[AuthMode]*Registry{}
	s.mu.Unlock()
	if s.cp != nil {
		firstErr = s.cp.Stop()
		s.cp = nil
	}
	return firstErr
}
