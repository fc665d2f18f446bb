package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
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
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// A fixed time keeps the image the same from run to run.
	mtime := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: "testimage", Mode: 0o755, Size: int64(len(prog)), ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(prog); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	cfg.Created = v1.Time{Time: mtime}
	cfg.Config.Entrypoint = []string{"/testimage"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

// TestIndex is TestImage for several architectures in one index.
func TestIndex(archs ...string) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range archs {
		img, err := TestImage(arch)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return idx, nil
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
