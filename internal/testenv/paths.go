package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"sync"
)

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

// kubeRequire is the line of hack/kubernetes/go.mod that pins Kubernetes,
// matched as hack/tools.sh and the Makefile match it (sed), so that the
// three agree on the version or all fail together.
var kubeRequire = regexp.MustCompile(`(?m)^require k8s\.io/kubernetes (v[0-9.]*)$`)

// KubeVersion is the Kubernetes version the harness builds and runs: the
// k8s.io/kubernetes requirement of hack/kubernetes/go.mod, its one pin.
var KubeVersion = sync.OnceValue(func() string {
	path := filepath.Join(RepoRoot(), "hack", "kubernetes", "go.mod")
	b, err := os.ReadFile(path)
	if err != nil {
		panic(fmt.Sprintf("testenv: the Kubernetes version: %v", err))
	}
	m := kubeRequire.FindSubmatch(b)
	if m == nil {
		panic(fmt.Sprintf("testenv: no `require k8s.io/kubernetes vX.Y.Z` line in %s", path))
	}
	return string(m[1])
})

// AssetsDir is where kube-apiserver, etcd and kubectl live: KUBEBUILDER_ASSETS
// when set, otherwise the cache directory hack/tools.sh fills
// (${XDG_CACHE_HOME:-$HOME/.cache}/regcred/envtest/KubeVersion).
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
	return filepath.Join(cache, "regcred", "envtest", KubeVersion())
}

// FastTempDir is where etcd keeps its data: a tmpfs when there is one, so
// its fsyncs cost nothing.
func FastTempDir() string {
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
