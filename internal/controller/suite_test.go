package controller_test

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/manager"
	"regcred.dev/regcred/internal/registry"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/controlplane"
	"regcred.dev/regcred/internal/testenv/fakecloud"
	"regcred.dev/regcred/internal/testenv/testsuite"
)

const regcredNamespace = "regcred-system"

var (
	suite   = testsuite.New(controlplane.WithSchemeAdder(v1alpha1.AddToScheme))
	mgrOnce sync.Once
	mgrErr  error
	// running is the package's manager, for tests that look at its cache.
	running ctrl.Manager
	logs    = &lockedBuffer{}
	// cloudTrust holds the CAs of the fake clouds and registries the
	// tests start; the manager's cloud client trusts them.
	cloudTrust = &fakecloud.Trust{}
	// pluginDir is the manager's --credential-provider-dir.
	pluginDir string
	// tenantEndpointHosts is the manager's --tenant-endpoint-hosts: the
	// fake clouds listen on 127.0.0.1; "localhost" is a host it refuses.
	tenantEndpointHosts = []string{"127.0.0.1"}
)

func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }

// lockedBuffer collects the manager's log output for the leak test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startManager returns a client of the control plane on which one regcred
// manager runs for the whole package.
func startManager(t *testing.T) client.Client {
	t.Helper()
	testenv.SkipShort(t, "integration test")
	cp := suite.ControlPlane(t)
	mgrOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: regcredNamespace}}
		if mgrErr = cp.Client.Create(ctx, ns); mgrErr != nil {
			cancel()
			return
		}
		if pluginDir, mgrErr = os.MkdirTemp("", "regcred-plugins-"); mgrErr != nil {
			cancel()
			return
		}
		suite.OnStop(func() { _ = os.RemoveAll(pluginDir) })
		ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true), zap.Level(zapcore.Level(-2))))
		mgr, err := manager.New(ctx, manager.Options{RestConfig: cp.Config, Namespace: regcredNamespace, MetricsAddr: "0", ProbeAddr: "0", QPS: 200, Burst: 400,
			Cloud: cloud.Env{HTTPClient: cloudTrust.Client()}, PluginDir: pluginDir, TenantEndpointHosts: tenantEndpointHosts, Registry: []registry.Option{registry.WithTransport(cloudTrust.Client().Transport)},
			// The test registries and clouds listen on 127.0.0.1: tenants
			// may reach that address, and no other loopback or private
			// one (TestTenantProbeOfPrivatePage serves on 127.0.0.2).
			TenantAllowPrivateNetworks: []string{tenantAllowedNetwork}})
		if err != nil {
			mgrErr = err
			cancel()
			return
		}
		running = mgr
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := mgr.Start(ctx); err != nil {
				logs.Write([]byte("manager stopped: " + err.Error() + "\n"))
			}
		}()
		suite.OnStop(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
			}
		})
	})
	if mgrErr != nil {
		t.Fatalf("start manager: %v", mgrErr)
	}
	start := len(logs.String())
	t.Cleanup(func() {
		if t.Failed() {
			out := logs.String()[start:]
			if len(out) > 20000 {
				out = out[len(out)-20000:]
			}
			t.Logf("manager log during the test:\n%s", out)
		}
	})
	return cp.Client
}
