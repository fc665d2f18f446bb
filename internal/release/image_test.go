package release_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"regcred.dev/regcred/internal/imagebuild"
	"regcred.dev/regcred/internal/release"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/fixtures"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

var testVersion = release.Version{Version: "v1.2.3-4-gabcdef0", Commit: "abcdef0123456789abcdef0123456789abcdef01", Time: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}

func versionArgs(v release.Version) []string {
	return []string{"--version", v.Version, "--commit", v.Commit, "--date", strconv.FormatInt(v.Time.Unix(), 10)}
}

// buildLayout runs `make image`'s tool for platforms into a new layout
// and returns the image index in it.
func buildLayout(t *testing.T, dir string, platforms ...string) v1.ImageIndex {
	t.Helper()
	args := append([]string{"image", "--layout", dir, "--platforms", strings.Join(platforms, ",")}, versionArgs(testVersion)...)
	fixtures.RunReleaseTool(t, args...)
	return readLayout(t, dir)
}

// readLayout is the one image index of a layout the tool wrote, named by
// the release's tag.
func readLayout(t *testing.T, dir string) v1.ImageIndex {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := root.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].Annotations[release.RefNameAnnotation] != release.SemVer(testVersion) {
		t.Fatalf("layout index.json: %+v, want one entry named %s", m.Manifests, release.SemVer(testVersion))
	}
	idx, err := root.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

var (
	sharedOnce sync.Once
	sharedDir  string
)

// sharedImage is one build of the image for the tests that only read it.
func sharedImage(t *testing.T) v1.ImageIndex {
	t.Helper()
	testenv.SkipShort(t, "builds regcred for two platforms")
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "regcred-image-test-")
		if err != nil {
			t.Fatal(err)
		}
		suite.OnStop(func() { _ = os.RemoveAll(dir) })
		sharedDir = filepath.Join(dir, "layout")
	})
	if _, err := os.Stat(sharedDir); err != nil {
		return buildLayout(t, sharedDir, "linux/amd64", "linux/arm64")
	}
	return readLayout(t, sharedDir)
}

// TestImageIsReproducible builds this machine's platform again, from a
// fresh binary in another directory, and finds the image the shared build
// made for it.
func TestImageIsReproducible(t *testing.T) {
	first := sharedImage(t)
	p := release.Platform{OS: "linux", Arch: goruntime.GOARCH}
	again := buildLayout(t, filepath.Join(t.TempDir(), "layout"), p.String())
	want, err := again.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	got, err := first.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range got.Manifests {
		if d.Platform.Architecture == p.Arch {
			found = true
			if d.Digest != want.Manifests[0].Digest {
				t.Errorf("two builds of one commit for %s differ: %s and %s", p, d.Digest, want.Manifests[0].Digest)
			}
		}
	}
	if !found {
		t.Fatalf("the image has no %s", p)
	}
	// The index over the same images is the same too.
	img, err := again.Image(want.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	var imgs []v1.Image
	for _, d := range got.Manifests {
		if d.Platform.Architecture == p.Arch {
			imgs = append(imgs, img)
			continue
		}
		other, err := first.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, other)
	}
	idx, err := imagebuild.Index(release.ImageLabels(testVersion), imgs...)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := first.Digest()
	d2, _ := idx.Digest()
	if d1 != d2 {
		t.Errorf("index digests %s and %s over the same images", d1, d2)
	}
}

func TestImageContents(t *testing.T) {
	idx := sharedImage(t)
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, d := range m.Manifests {
		platforms = append(platforms, d.Platform.String())
	}
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
		t.Fatalf("platforms %v, want %v", platforms, want)
	}
	if m.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("index media type %s", m.MediaType)
	}
	if got := m.Annotations["org.opencontainers.image.revision"]; got != testVersion.Commit {
		t.Errorf("index revision annotation %q", got)
	}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != "65532:65532" {
			t.Errorf("%s runs as %q, want 65532:65532", d.Platform, cf.Config.User)
		}
		if !slices.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/regcred"}) {
			t.Errorf("%s entrypoint %v", d.Platform, cf.Config.Entrypoint)
		}
		for k, want := range map[string]string{
			"org.opencontainers.image.version":  testVersion.Version,
			"org.opencontainers.image.revision": testVersion.Commit,
			"org.opencontainers.image.source":   release.Source,
		} {
			if got := cf.Config.Labels[k]; got != want {
				t.Errorf("%s label %s=%q, want %q", d.Platform, k, got, want)
			}
		}
		if !cf.Created.Time.Equal(testVersion.Time) {
			t.Errorf("%s created %v, want the commit's time", d.Platform, cf.Created)
		}
		files := imageFiles(t, img)
		for _, want := range []string{"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "tmp/", "home/nonroot/", "usr/local/bin/regcred"} {
			if _, ok := files[want]; !ok {
				t.Errorf("%s has no %s", d.Platform, want)
			}
		}
		for f := range files {
			if strings.HasPrefix(f, "bin/") || strings.HasPrefix(f, "sbin/") || strings.HasSuffix(f, "/sh") {
				t.Errorf("%s has %s: the image should hold no shell", d.Platform, f)
			}
		}
		if h := files["etc/passwd"]; !strings.Contains(string(h.data), "nonroot:x:65532:65532:") {
			t.Errorf("%s /etc/passwd lacks the non-root user: %q", d.Platform, h.data)
		}
		if h := files["home/nonroot/"]; h.uid != 65532 {
			t.Errorf("%s /home/nonroot owned by %d", d.Platform, h.uid)
		}
		if d.Platform.Architecture == "amd64" && os.Getenv("GOARCH") == "" {
			// The binary of this machine's platform runs and knows its build.
			bin := filepath.Join(t.TempDir(), "regcred")
			if err := os.WriteFile(bin, files["usr/local/bin/regcred"].data, 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "version").CombinedOutput()
			if err != nil {
				t.Fatalf("regcred version from the image: %v: %s", err, out)
			}
			if !strings.Contains(string(out), testVersion.Version) || !strings.Contains(string(out), testVersion.Commit) {
				t.Errorf("regcred version from the image says %q", out)
			}
		}
	}
}

type imageFile struct {
	data []byte
	uid  int
}

func imageFiles(t *testing.T, img v1.Image) map[string]imageFile {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]imageFile{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = imageFile{data: data, uid: h.Uid}
		}
		rc.Close()
	}
	return files
}

// TestLayoutRefusesAnotherBuild: a layout directory holds one build.
// (Pushing with a docker config's credentials is test/install's first
// step; writing the layout is every image test's.)
func TestLayoutRefusesAnotherBuild(t *testing.T) {
	idx := sharedImage(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := release.WriteLayout(dir, idx, "v1.2.3")
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a layout into a used directory: %v", err)
	}
}

// TestLayoutPushedWithSkopeo runs the README's install step: the release's
// image layout copied to a private registry with skopeo.
func TestLayoutPushedWithSkopeo(t *testing.T) {
	idx := sharedImage(t)
	skopeo := testenv.Tool(t, "skopeo")
	want, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "image")
	if err := release.WriteLayout(dir, idx, "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	reg := suite.Registry(t, testregistry.Basic)
	authFile := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(authFile, reg.DockerConfigJSON(t), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := reg.Ref("platform/regcred:v1.2.3")
	cmd := exec.Command(skopeo, "copy", "--all", "--authfile", authFile, "--dest-cert-dir", reg.CertDir,
		"oci:"+dir+":v1.2.3", "docker://"+dst)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	ctx := context.Background()
	r, err := name.ParseReference(dst)
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := remote.Index(r, reg.RemoteOptions(ctx, reg.Auth())...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pushed.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := pushed.RawManifest()
	wantM, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	gotDigest, _ := pushed.Digest()
	t.Logf("layout index %s, pushed index %s:\n%s", want, gotDigest, raw)
	if len(got.Manifests) != len(wantM.Manifests) {
		t.Fatalf("pushed index has %d images, the layout %d", len(got.Manifests), len(wantM.Manifests))
	}
	for i := range got.Manifests {
		if got.Manifests[i].Digest != wantM.Manifests[i].Digest || got.Manifests[i].Platform.String() != wantM.Manifests[i].Platform.String() {
			t.Errorf("image %d: pushed %s %s, layout %s %s", i, got.Manifests[i].Platform, got.Manifests[i].Digest, wantM.Manifests[i].Platform, wantM.Manifests[i].Digest)
		}
	}
}
