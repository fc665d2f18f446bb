// Package release builds what regcred ships: the CLI for every platform,
// its container image (without a container engine), the Helm chart's
// package, checksums and the krew plugin manifest.
package release

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Platform is a GOOS/GOARCH pair.
type Platform struct{ OS, Arch string }

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// ParsePlatform reads "linux/amd64".
func ParsePlatform(s string) (Platform, error) {
	goos, arch, ok := strings.Cut(s, "/")
	if !ok || goos == "" || arch == "" || strings.Contains(arch, "/") {
		return Platform{}, fmt.Errorf("platform %q: want OS/ARCH, like linux/amd64", s)
	}
	return Platform{goos, arch}, nil
}

// ImagePlatforms are the platforms of regcred's image.
var ImagePlatforms = []Platform{{"linux", "amd64"}, {"linux", "arm64"}}

// CLIPlatforms are the platforms the CLI is released for.
var CLIPlatforms = []Platform{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"}, {"windows", "arm64"},
}

// Version identifies a build: the same Version of the same tree gives the
// same bytes.
type Version struct {
	// Version is what `regcred version` prints (git describe).
	Version string
	// Commit is the full revision.
	Commit string
	// Time is the commit's time: every timestamp of the image.
	Time time.Time
}

// GitVersion reads the Version of the work tree at dir.
func GitVersion(ctx context.Context, dir string) (Version, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	var v Version
	var err error
	if v.Version, err = git("describe", "--tags", "--always", "--dirty"); err != nil {
		return v, err
	}
	if v.Commit, err = git("rev-parse", "HEAD"); err != nil {
		return v, err
	}
	ct, err := git("log", "-1", "--format=%ct")
	if err != nil {
		return v, err
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return v, fmt.Errorf("commit time %q: %w", ct, err)
	}
	v.Time = time.Unix(sec, 0).UTC()
	return v, nil
}

// BuildBinary builds regcred's CLI from the module at moduleDir for p into
// out: static, without paths of the build machine, stamped with v.
func BuildBinary(ctx context.Context, moduleDir string, p Platform, v Version, out string) error {
	ldflags := fmt.Sprintf("-s -w -X regcred.dev/regcred/internal/version.version=%s -X regcred.dev/regcred/internal/version.commit=%s", v.Version, v.Commit)
	cmd := exec.CommandContext(ctx, filepath.Join(runtime.GOROOT(), "bin", "go"), "build",
		"-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, "./cmd/regcred")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build regcred for %s: %v: %s", p, err, b)
	}
	return nil
}

// binaries builds regcred at most once per platform of one build, so a
// release's image and archives share the linux binaries.
type binaries struct {
	moduleDir string
	version   Version
	work      string
	built     map[Platform][]byte
}

// newBinaries builds into work, or into a temporary directory that done
// removes.
func newBinaries(moduleDir string, v Version, work string) (b *binaries, done func(), err error) {
	done = func() {}
	if work == "" {
		if work, err = os.MkdirTemp("", "regcred-build-"); err != nil {
			return nil, nil, err
		}
		dir := work
		done = func() { _ = os.RemoveAll(dir) }
	}
	return &binaries{moduleDir: moduleDir, version: v, work: work, built: map[Platform][]byte{}}, done, nil
}

// get is the binary for p.
func (b *binaries) get(ctx context.Context, p Platform) ([]byte, error) {
	if data, ok := b.built[p]; ok {
		return data, nil
	}
	bin := filepath.Join(b.work, p.OS+"-"+p.Arch, BinaryName(p))
	if err := BuildBinary(ctx, b.moduleDir, p, b.version, bin); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	b.built[p] = data
	return data, nil
}

// BinaryName is the CLI's file name on p.
func BinaryName(p Platform) string {
	if p.OS == "windows" {
		return "regcred.exe"
	}
	return "regcred"
}
