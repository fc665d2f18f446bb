package release_test

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"regcred.dev/regcred/internal/release"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/fixtures"
)

func TestSemVer(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v1.2.3", "v1.2.3"},
		{"v1.2.3-rc.1", "v1.2.3-rc.1"},
		{"v1.2.3-4-gabcdef0", "v1.2.3-4-gabcdef0"},
		{"e7e706a", "v0.0.0-e7e706a"},
		{"e7e706a-dirty", "v0.0.0-e7e706a-dirty"},
		{"1.2.3", "v0.0.0-1.2.3"},
		{"v1.2", "v0.0.0-v1.2"},
		{"", "v0.0.0-dev"},
		{"a/b c", "v0.0.0-a-b-c"},
	} {
		if got := release.SemVer(release.Version{Version: tc.in}); got != tc.want {
			t.Errorf("SemVer(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParsePlatform(t *testing.T) {
	if p, err := release.ParsePlatform("linux/arm64"); err != nil || p != (release.Platform{OS: "linux", Arch: "arm64"}) {
		t.Errorf("linux/arm64: %v %v", p, err)
	}
	for _, bad := range []string{"", "linux", "/amd64", "linux/", "linux/arm/v7"} {
		if _, err := release.ParsePlatform(bad); err == nil {
			t.Errorf("ParsePlatform(%q) accepted", bad)
		}
	}
}

// TestReleaseArtifacts runs `make release`'s tool for the image's
// platforms (their builds are cached by the image tests) and checks what
// it wrote: archives with the binary, the chart package with the
// release's version, the image layout, checksums and the krew manifest.
func TestReleaseArtifacts(t *testing.T) {
	testenv.SkipShort(t, "builds regcred")
	helm := testenv.Tool(t, "helm3")
	out := filepath.Join(t.TempDir(), "dist")
	args := append([]string{"all", "--out", out, "--helm", helm, "--platforms", "linux/amd64,linux/arm64",
		"--base-url", "https://example.com/dl/{version}"}, versionArgs(testVersion)...)
	fixtures.RunReleaseTool(t, args...)

	chart := "regcred-v1.2.3-4-gabcdef0.tgz"
	shown, err := exec.Command(helm, "show", "chart", filepath.Join(out, chart)).CombinedOutput()
	if err != nil {
		t.Fatalf("helm show chart: %v: %s", err, shown)
	}
	if !strings.Contains(string(shown), "appVersion: v1.2.3-4-gabcdef0") || !strings.Contains(string(shown), "\nversion: v1.2.3-4-gabcdef0") {
		t.Errorf("packaged chart's version is not the release's:\n%s", shown)
	}
	if _, err := os.Stat(filepath.Join(out, "image", "index.json")); err != nil {
		t.Errorf("no image layout: %v", err)
	}
	sums := readChecksums(t, filepath.Join(out, "checksums.txt"))
	if len(sums) != 3 || sums[chart] == "" {
		t.Errorf("checksums.txt lists %v, want 2 archives and the chart", sums)
	}
	krew, err := os.ReadFile(filepath.Join(out, "krew", "regcred.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var plugin krewPlugin
	if err := yaml.UnmarshalStrict(krew, &plugin); err != nil {
		t.Fatalf("krew manifest: %v\n%s", err, krew)
	}
	if plugin.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || plugin.Kind != "Plugin" || plugin.Name != "regcred" || plugin.Spec.Version != "v1.2.3-4-gabcdef0" || plugin.Spec.ShortDescription == "" || plugin.Spec.Homepage == "" {
		t.Errorf("krew manifest header: %+v", plugin)
	}
	if len(plugin.Spec.Platforms) != 2 {
		t.Fatalf("krew platforms: %+v", plugin.Spec.Platforms)
	}
	for _, p := range plugin.Spec.Platforms {
		file := strings.TrimPrefix(p.URI, "https://example.com/dl/v1.2.3-4-gabcdef0/")
		if sums[file] == "" || sums[file] != p.Sha256 {
			t.Errorf("krew says %s has sha256 %s, checksums.txt %q", file, p.Sha256, sums[file])
		}
		if p.Bin != "regcred" {
			t.Errorf("%s: bin %q", file, p.Bin)
		}
		if got := archiveEntries(t, filepath.Join(out, file)); len(got) != 1 || got[0] != "regcred" {
			t.Errorf("%s holds %v, want [regcred]", file, got)
		}
	}
}

// krewPlugin is krew's index.Plugin (sigs.k8s.io/krew/pkg/index, whose
// module cannot be required beside today's client-go): a manifest must
// decode into it strictly.
type krewPlugin struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Version          string `json:"version,omitempty"`
		ShortDescription string `json:"shortDescription,omitempty"`
		Description      string `json:"description,omitempty"`
		Caveats          string `json:"caveats,omitempty"`
		Homepage         string `json:"homepage,omitempty"`
		Platforms        []struct {
			URI      string                `json:"uri,omitempty"`
			Sha256   string                `json:"sha256,omitempty"`
			Selector *metav1.LabelSelector `json:"selector,omitempty"`
			Files    []struct {
				From string `json:"from,omitempty"`
				To   string `json:"to,omitempty"`
			} `json:"files"`
			Bin string `json:"bin"`
		} `json:"platforms,omitempty"`
	} `json:"spec"`
}

func readChecksums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, file, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			t.Fatalf("checksums.txt line %q is not sha256sum's format", sc.Text())
		}
		sums[file] = sum
	}
	return sums
}

func archiveEntries(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Mode&0o111 == 0 {
			t.Errorf("%s in %s is not executable", h.Name, path)
		}
		names = append(names, h.Name)
	}
	return names
}

func TestKrewManifestPlatforms(t *testing.T) {
	var archives []release.Archive
	for _, p := range release.CLIPlatforms {
		archives = append(archives, release.Archive{Platform: p, Name: release.ArchiveName(testVersion, p), SHA256: strings.Repeat("a", 64)})
	}
	b, err := release.KrewManifest(testVersion, archives, "https://example.com/dl/")
	if err != nil {
		t.Fatal(err)
	}
	var plugin krewPlugin
	if err := yaml.UnmarshalStrict(b, &plugin); err != nil {
		t.Fatal(err)
	}
	if len(plugin.Spec.Platforms) != 6 {
		t.Fatalf("%d platforms, want 6", len(plugin.Spec.Platforms))
	}
	for _, p := range plugin.Spec.Platforms {
		os, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		want := "regcred"
		if os == "windows" {
			want = "regcred.exe"
		}
		if p.Bin != want {
			t.Errorf("%s/%s: bin %q, want %q", os, arch, p.Bin, want)
		}
		if wantURI := "https://example.com/dl/regcred_v1.2.3-4-gabcdef0_" + os + "_" + arch + ".tar.gz"; p.URI != wantURI {
			t.Errorf("%s/%s: uri %q, want %q", os, arch, p.URI, wantURI)
		}
	}
	if _, err := release.KrewManifest(testVersion, nil, "https://example.com/dl"); err == nil {
		t.Error("a krew manifest without archives")
	}
}
