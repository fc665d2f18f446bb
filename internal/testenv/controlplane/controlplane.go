// Package controlplane starts a real kube-apiserver backed by etcd, driven
// by controller-runtime's envtest, with regcred's CRDs installed: the API
// server most integration tests run against. There is no kubelet: Pods are
// stored, never run (package testcluster runs them).
//
// The binaries come from testenv.AssetsDir; when they are missing, CheckAssets
// says how to install them.
package controlplane

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"regcred.dev/regcred/internal/testenv"
)

// ControlPlane is a running kube-apiserver and etcd with regcred's CRDs
// installed.
type ControlPlane struct {
	Env    *envtest.Environment
	Config *rest.Config
	Client client.Client
	Scheme *runtime.Scheme
	// Kubeconfig is the path of a kubeconfig file for an admin user, usable
	// with kubectl.
	Kubeconfig string

	dir string
	// argv of components Kill stopped, and the processes StartAgain
	// started (faults.go).
	argv      map[Component][]string
	restarted []*exec.Cmd
}

// Option changes how the control plane starts.
type Option func(*envtest.Environment)

// WithAPIServerArg sets a kube-apiserver flag.
func WithAPIServerArg(name string, values ...string) Option {
	return func(e *envtest.Environment) {
		e.ControlPlane.GetAPIServer().Configure().Set(name, values...)
	}
}

// WithServiceAccountAdmission turns on the ServiceAccount admission
// plugin, which envtest disables: Pods then need their ServiceAccount to
// exist and get its imagePullSecrets copied in when they list none.
func WithServiceAccountAdmission() Option {
	return func(e *envtest.Environment) {
		e.ControlPlane.GetAPIServer().Configure().Disable("disable-admission-plugins")
	}
}

// WithSchemeAdder registers more types with the client's scheme.
func WithSchemeAdder(add func(*runtime.Scheme) error) Option {
	return func(e *envtest.Environment) {
		if e.Scheme == nil {
			e.Scheme = runtime.NewScheme()
			_ = clientgoscheme.AddToScheme(e.Scheme)
		}
		_ = add(e.Scheme)
	}
}

// CheckAssets tells whether the control-plane binaries are installed, with a
// hint that says how to install them when they are not.
func CheckAssets() error {
	dir := testenv.AssetsDir()
	var missing []string
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s not found in %s: run `make tools` (or set KUBEBUILDER_ASSETS)", strings.Join(missing, " and "), dir)
	}
	return nil
}

// Start starts etcd and kube-apiserver and installs the CRDs from
// config/crd/bases.
func Start(opts ...Option) (*ControlPlane, error) {
	if err := CheckAssets(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(testenv.FastTempDir(), "regcred-controlplane-")
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	var env *envtest.Environment
	var cfg *rest.Config
	// Ports below the ephemeral range are chosen at random: two test
	// processes may pick the same one, and the loser starts again.
	for attempt := 1; ; attempt++ {
		env, err = newEnvironment(dir, scheme, opts)
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		cfg, err = env.Start()
		if err == nil {
			break
		}
		_ = env.Stop()
		if attempt == 3 {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("start kube-apiserver and etcd from %s: %w", testenv.AssetsDir(), err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "etcd")); err != nil {
			return nil, err
		}
	}
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	cp := &ControlPlane{Env: env, Config: cfg, Client: c, Scheme: env.Scheme, dir: dir}
	if err := cp.writeKubeconfig(); err != nil {
		_ = cp.Stop()
		return nil, err
	}
	return cp, nil
}

func newEnvironment(dir string, scheme *runtime.Scheme, opts []Option) (*envtest.Environment, error) {
	env := &envtest.Environment{
		BinaryAssetsDirectory:    testenv.AssetsDir(),
		CRDDirectoryPaths:        []string{testenv.CRDDir()},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
		Scheme:                   scheme,
	}
	etcd := &envtest.Etcd{}
	env.ControlPlane.Etcd = etcd
	etcd.DataDir = filepath.Join(dir, "etcd")
	if err := os.Mkdir(etcd.DataDir, 0o700); err != nil {
		return nil, err
	}
	// Disable the Etcd quota alarm tripping on fast test churn.
	etcd.Configure().Set("quota-backend-bytes", "4294967296")
	if ports, err := restartablePorts(3); err != nil {
		return nil, err
	} else if ports != nil {
		etcd.URL = &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))}
		etcd.Configure().Set("listen-peer-urls", "http://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])))
		api := env.ControlPlane.GetAPIServer()
		api.SecureServing.Address, api.SecureServing.Port = "127.0.0.1", strconv.Itoa(ports[2])
	}
	for _, opt := range opts {
		opt(env)
	}
	if os.Getenv("REGCRED_TESTENV_VERBOSE") == "1" {
		env.AttachControlPlaneOutput = true
	}
	return env, nil
}

// restartablePorts are n free loopback ports below the kernel's ephemeral
// range, for etcd and the API server, which Kill and StartAgain restart
// on the same ports. A port envtest picks (by listening on port 0) lies in
// that range: once its server is killed, any outgoing connection on the
// machine may take it as its local port, and the restarted server fails
// with "bind: address already in use". nil when the range starts too low
// to leave room below it.
func restartablePorts(n int) ([]int, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	const floor = 10000
	if low-floor < 1000 {
		return nil, nil
	}
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 100 {
			return nil, fmt.Errorf("no free port in %d-%d", floor, low-1)
		}
		port := floor + rand.IntN(low-floor)
		if slices.Contains(out, port) {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = l.Close()
		out = append(out, port)
	}
	return out, nil
}

func (cp *ControlPlane) writeKubeconfig() error {
	user, err := cp.Env.AddUser(envtest.User{Name: "regcred-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add admin user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("render kubeconfig: %w", err)
	}
	cp.Kubeconfig = filepath.Join(cp.dir, "kubeconfig")
	return os.WriteFile(cp.Kubeconfig, kubeconfig, 0o600)
}

// Stop stops kube-apiserver and etcd and removes their data.
func (cp *ControlPlane) Stop() error {
	if cp == nil {
		return nil
	}
	// A restarted API server first, a restarted etcd last: an API server
	// whose etcd is gone retries until envtest's stop timeout.
	var etcds []*exec.Cmd
	for _, cmd := range cp.restarted {
		if filepath.Base(cmd.Path) == string(Etcd) {
			etcds = append(etcds, cmd)
		}
	}
	cp.restarted = slices.DeleteFunc(cp.restarted, func(c *exec.Cmd) bool { return slices.Contains(etcds, c) })
	cp.stopRestarted()
	err := cp.Env.Stop()
	cp.restarted = etcds
	cp.stopRestarted()
	if rmErr := os.RemoveAll(cp.dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// CreateNamespace creates a namespace with a generated name that starts with
// prefix and returns its name.
func (cp *ControlPlane) CreateNamespace(ctx context.Context, prefix string, labels map[string]string) (string, error) {
	ns := &corev1.Namespace{}
	ns.GenerateName = prefix + "-"
	ns.Labels = labels
	if err := cp.Client.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("create namespace: %w", err)
	}
	return ns.Name, nil
}
