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
	os, arch, ok := strings.Cut(s, "/")
	if !ok || os == "" || arch == "" || strings.Contains(arch, "/") {
		return Platform{}, fmt.Errorf("platform %q: want OS/ARCH, like linux/amd64", s)
	}
	return Platform{os, arch}, nil
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

// BinaryName is the CLI's file name on p.
func BinaryName(p Platform) string {
	if p.OS == "windows" {
		return "regcred.exe"
	}
	return "regcred"
}
