package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"regcred.dev/regcred/internal/imagebuild"
)

var (
	programMu    sync.Mutex
	programCache = map[string][]byte{}
)

// testProgram is the static testimage binary for linux/arch, built once
// per test process.
func testProgram(arch string) ([]byte, error) {
	programMu.Lock()
	defer programMu.Unlock()
	if b, ok := programCache[arch]; ok {
		return b, nil
	}
	out := filepath.Join(os.TempDir(), fmt.Sprintf("regcred-testimage-%s-%d", arch, os.Getpid()))
	defer os.Remove(out)
	cmd := exec.Command(filepath.Join(goruntime.GOROOT(), "bin", "go"), "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./internal/testenv/testimage")
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the test image program for %s: %v: %s", arch, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	programCache[arch] = b
	return b, nil
}

// TestImage is a one-layer OCI image holding the static testimage program
// as /testimage, its entrypoint, for linux/arch. It runs until stopped.
func TestImage(arch string) (v1.Image, error) {
	prog, err := testProgram(arch)
	if err != nil {
		return nil, err
	}
	// A fixed time keeps the image the same from run to run.
	mtime := time.Unix(0, 0)
	layer, err := imagebuild.Layer([]imagebuild.File{{Path: "testimage", Mode: 0o755, Data: prog}}, mtime)
	if err != nil {
		return nil, err
	}
	return imagebuild.Image(v1.Platform{OS: "linux", Architecture: arch},
		imagebuild.Config{Entrypoint: []string{"/testimage"}, Created: mtime}, layer)
}

// TestIndex is TestImage for several architectures in one index.
func TestIndex(archs ...string) (v1.ImageIndex, error) {
	var images []v1.Image
	for _, arch := range archs {
		img, err := TestImage(arch)
		if err != nil {
			return nil, err
		}
		images = append(images, img)
	}
	return imagebuild.Index(nil, images...)
}

// WriteTestImageTarball writes TestImage for this machine as a tarball
// tagged tag, for `ctr images import`.
func WriteTestImageTarball(path, tag string) error {
	img, err := TestImage(goruntime.GOARCH)
	if err != nil {
		return err
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, ref, img)
}

// PushTestImage pushes a runnable test image (linux on this machine's
// architecture and arm64, in one index) as repoAndTag, with the registry's
// own user.
func (r *Registry) PushTestImage(ctx context.Context, repoAndTag string) (v1.Hash, error) {
	archs := []string{goruntime.GOARCH}
	if goruntime.GOARCH != "arm64" {
		archs = append(archs, "arm64")
	}
	idx, err := TestIndex(archs...)
	if err != nil {
		return v1.Hash{}, err
	}
	ref, err := name.ParseReference(r.Ref(repoAndTag))
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.WriteIndex(ref, idx, r.RemoteOptions(ctx, r.Auth())...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return idx.Digest()
}

// RunReleaseTool runs hack/release (what `make image` and `make release`
// run) in the source tree, with `go run`: a process of its own, without
// the race detector, which would make its compression of tens of
// megabytes take minutes.
func RunReleaseTool(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(goruntime.GOROOT(), "bin", "go"), append([]string{"run", "./hack/release"}, args...)...)
	cmd.Dir = RepoRoot()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("release %v: %v\n%s", args, err, out)
	}
	return string(out)
}
