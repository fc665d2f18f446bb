package testenv_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"regcred.dev/regcred/internal/testenv"
)

// TestAssetsDirIsToolsScripts: the harness looks for the test binaries
// where hack/tools.sh (`make tools`) puts them, for the same Kubernetes
// version, with or without KUBEBUILDER_ASSETS and XDG_CACHE_HOME.
func TestAssetsDirIsToolsScripts(t *testing.T) {
	bash := testenv.Tool(t, "bash")
	script := filepath.Join(testenv.RepoRoot(), "hack", "tools.sh")
	for _, tc := range []struct{ name, assets, cache string }{
		{"defaults", "", ""},
		{"XDG_CACHE_HOME", "", t.TempDir()},
		{"KUBEBUILDER_ASSETS", t.TempDir(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBEBUILDER_ASSETS", tc.assets)
			t.Setenv("XDG_CACHE_HOME", tc.cache)
			out, err := exec.Command(bash, script, "--assets-dir").Output()
			if err != nil {
				t.Fatalf("tools.sh --assets-dir: %v", err)
			}
			if got, want := strings.TrimSpace(string(out)), testenv.AssetsDir(); got != want {
				t.Errorf("tools.sh puts the tools in %s, the harness looks in %s", got, want)
			}
		})
	}
	if !strings.HasSuffix(testenv.AssetsDir(), string(os.PathSeparator)+testenv.KubeVersion()) && os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Errorf("AssetsDir %s is not per Kubernetes version %s", testenv.AssetsDir(), testenv.KubeVersion())
	}
}
