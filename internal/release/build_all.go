package release

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildOptions say what a release is made of.
type BuildOptions struct {
	ModuleDir string
	Version   Version
	// Out is the release directory.
	Out string
	// Helm is the Helm client that packages charts/regcred.
	Helm string
	// BaseURL is where the archives will be downloaded from.
	BaseURL string
	// CLIPlatforms default to CLIPlatforms; ImagePlatforms to
	// ImagePlatforms.
	CLIPlatforms   []Platform
	ImagePlatforms []Platform
}

// Result lists the files of a release, relative to its directory.
type Result struct {
	Files []string
}

// Build writes a release to o.Out: the CLI archives, the chart package
// (its version and appVersion the release's), the image as an OCI layout
// in image/, krew/regcred.yaml and checksums.txt.
func Build(ctx context.Context, o BuildOptions) (*Result, error) {
	cli := o.CLIPlatforms
	if len(cli) == 0 {
		cli = CLIPlatforms
	}
	bins, done, err := newBinaries(o.ModuleDir, o.Version, "")
	if err != nil {
		return nil, err
	}
	defer done()
	archives, err := buildArchives(ctx, bins, cli, o.Out)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	for _, a := range archives {
		res.Files = append(res.Files, a.Name)
	}
	chart, err := PackageChart(ctx, o.Helm, filepath.Join(o.ModuleDir, "charts", "regcred"), o.Version, o.Out)
	if err != nil {
		return nil, err
	}
	res.Files = append(res.Files, chart)
	// The image takes the linux binaries the archives were made of.
	idx, err := image(ctx, ImageOptions{ModuleDir: o.ModuleDir, Version: o.Version, Platforms: o.ImagePlatforms}, bins)
	if err != nil {
		return nil, err
	}
	if err := WriteLayout(filepath.Join(o.Out, "image"), idx, SemVer(o.Version)); err != nil {
		return nil, err
	}
	res.Files = append(res.Files, "image/")
	krew, err := KrewManifest(o.Version, archives, o.BaseURL)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.Out, "krew"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Out, "krew", "regcred.yaml"), krew, 0o644); err != nil {
		return nil, err
	}
	res.Files = append(res.Files, "krew/regcred.yaml")
	if err := WriteChecksums(o.Out); err != nil {
		return nil, err
	}
	res.Files = append(res.Files, "checksums.txt")
	return res, nil
}

// PackageChart runs `helm package` on chartDir with the release's version
// as the chart's version and appVersion (so the image tag defaults to
// it), and returns the package's file name in out.
func PackageChart(ctx context.Context, helm, chartDir string, v Version, out string) (string, error) {
	ver := SemVer(v)
	// The chart's version keeps the v, as the image tag, the layout's tag
	// and the CLI archives do, so one VERSION names every artifact
	// (Helm takes v1.2.3 as SemVer, as cert-manager's charts use it).
	cmd := exec.CommandContext(ctx, helm, "package", chartDir, "--version", ver, "--app-version", ver, "--destination", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("helm package: %v: %s", err, b)
	}
	name := fmt.Sprintf("regcred-%s.tgz", ver)
	if _, err := os.Stat(filepath.Join(out, name)); err != nil {
		return "", fmt.Errorf("helm package wrote no %s: %w", name, err)
	}
	return name, nil
}
