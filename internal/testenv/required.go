package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Required reports whether missing test infrastructure is a failure rather
// than a reason to skip. CI sets CI=true; REGCRED_REQUIRE_TESTENV=1 does the
// same locally.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("REGCRED_REQUIRE_TESTENV") == "1"
}

// SkipShort skips the test under `go test -short`, saying why it is not a
// short test (it is an integration test, runs Helm, builds regcred, ...).
func SkipShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip(why)
	}
}

// Tool returns the path of a command the tests run: from AssetsDir (where
// `make tools` builds kubectl, Helm and the Kubernetes components) or else
// from PATH (skopeo). A missing tool skips the test locally and fails it
// under Required, like every other missing part.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p := filepath.Join(AssetsDir(), name); Executable(p) {
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

// Executable reports whether path is a file that may be run.
func Executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
