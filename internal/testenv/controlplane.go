// Package testenv starts the real parts regcred is tested against: a
// kube-apiserver backed by etcd (driven by controller-runtime's envtest) and a
// CNCF distribution registry served over TLS with basic or bearer-token auth.
//
// Nothing here is a fake. When the binaries are missing the tests skip locally
// with a hint, and fail when CI=true (see Required).
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeVersion is the kube-apiserver version the harness builds and runs.
const KubeVersion = "v1.37.1"

// Required reports whether missing test infrastructure is a failure rather
// than a reason to skip. CI sets CI=true; REGCRED_REQUIRE_TESTENV=1 does the
// same locally.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("REGCRED_REQUIRE_TESTENV") == "1"
}

// AssetsDir is where kube-apiserver, etcd and kubectl live: KUBEBUILDER_ASSETS
// when set, otherwise the cache directory hack/tools.sh fills.
func AssetsDir() string {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "regcred", "envtest", KubeVersion)
}

// RepoRoot is the root of the regcred source tree, found from this file.
func RepoRoot() string {
	_, file, _, ok := goruntime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CRDDir holds the generated CustomResourceDefinitions.
func CRDDir() string { return filepath.Join(RepoRoot(), "config", "crd", "bases") }

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
}

// ControlPlaneOption changes how the control plane starts.
type ControlPlaneOption func(*envtest.Environment)

// WithAPIServerArg sets a kube-apiserver flag.
func WithAPIServerArg(name string, values ...string) ControlPlaneOption {
	return func(e *envtest.Environment) {
		e.ControlPlane.GetAPIServer().Configure().Set(name, values...)
	}
}

// WithServiceAccountAdmission turns on the ServiceAccount admission
// plugin, which envtest disables: Pods then need their ServiceAccount to
// exist and get its imagePullSecrets copied in when they list none.
func WithServiceAccountAdmission() ControlPlaneOption {
	return func(e *envtest.Environment) {
		e.ControlPlane.GetAPIServer().Configure().Disable("disable-admission-plugins")
	}
}

// WithSchemeAdder registers more types with the client's scheme.
func WithSchemeAdder(add func(*runtime.Scheme) error) ControlPlaneOption {
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
	dir := AssetsDir()
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

// StartControlPlane starts etcd and kube-apiserver and installs the CRDs from
// config/crd/bases.
func StartControlPlane(opts ...ControlPlaneOption) (*ControlPlane, error) {
	if err := CheckAssets(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(fastTempDir(), "regcred-controlplane-")
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    AssetsDir(),
		CRDDirectoryPaths:        []string{CRDDir()},
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
	for _, opt := range opts {
		opt(env)
	}
	if os.Getenv("REGCRED_TESTENV_VERBOSE") == "1" {
		env.AttachControlPlaneOutput = true
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start kube-apiserver and etcd from %s: %w", AssetsDir(), err)
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
	err := cp.Env.Stop()
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

// fastTempDir prefers a tmpfs so etcd's fsyncs cost nothing.
func fastTempDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		f, err := os.CreateTemp("/dev/shm", "regcred-probe-")
		if err == nil {
			name := f.Name()
			_ = f.Close()
			_ = os.Remove(name)
			return "/dev/shm"
		}
	}
	return os.TempDir()
}

// Tool returns the path of a command the tests run: from AssetsDir (where
// `make tools` builds kubectl and the Kubernetes components) or else from
// PATH (skopeo). A missing tool skips the test locally and fails it under
// Required, like every other missing part.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p := filepath.Join(AssetsDir(), name); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if Required() {
		t.Fatalf("%s not found in %s or PATH: run `make tools`", name, AssetsDir())
	}
	t.Skipf("%s not found in %s or PATH: run `make tools`", name, AssetsDir())
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
