package release

import (
	"context"
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"regcred.dev/regcred/internal/imagebuild"
)

// Source is the project's address, in the image's labels.
const Source = "https://github.com/regcred/regcred"

// NonRootUID is the user (and group) regcred's image runs as.
const NonRootUID = 65532

// DefaultCAFile is where Debian's ca-certificates package puts its bundle.
const DefaultCAFile = "/etc/ssl/certs/ca-certificates.crt"

// ImageOptions say how to build the image.
type ImageOptions struct {
	// ModuleDir is regcred's source.
	ModuleDir string
	Version   Version
	// Platforms default to ImagePlatforms.
	Platforms []Platform
	// CAFile is the PEM bundle the image trusts; DefaultCAFile when empty.
	CAFile string
	// WorkDir holds the binaries; a temporary directory when empty.
	WorkDir string
}

// Image builds regcred's image: per platform, a base layer made from
// nothing but a CA bundle, a passwd with the non-root user and an empty
// /tmp, and a layer with the static binary as the entrypoint. There is no
// shell and no package manager.
func Image(ctx context.Context, o ImageOptions) (v1.ImageIndex, error) {
	bins, done, err := newBinaries(o.ModuleDir, o.Version, o.WorkDir)
	if err != nil {
		return nil, err
	}
	defer done()
	return image(ctx, o, bins)
}

func image(ctx context.Context, o ImageOptions, bins *binaries) (v1.ImageIndex, error) {
	platforms := o.Platforms
	if len(platforms) == 0 {
		platforms = ImagePlatforms
	}
	caFile := o.CAFile
	if caFile == "" {
		caFile = DefaultCAFile
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA bundle for the image: %w (install Debian's ca-certificates)", err)
	}
	base, err := imagebuild.Layer(baseFiles(ca), o.Version.Time)
	if err != nil {
		return nil, err
	}
	labels := ImageLabels(o.Version)
	var images []v1.Image
	for _, p := range platforms {
		if p.OS != "linux" {
			return nil, fmt.Errorf("image platform %s: only linux", p)
		}
		data, err := bins.get(ctx, p)
		if err != nil {
			return nil, err
		}
		app, err := imagebuild.Layer([]imagebuild.File{
			{Path: "usr", Mode: 0o755, Dir: true},
			{Path: "usr/local", Mode: 0o755, Dir: true},
			{Path: "usr/local/bin", Mode: 0o755, Dir: true},
			{Path: "usr/local/bin/regcred", Mode: 0o755, Data: data},
		}, o.Version.Time)
		if err != nil {
			return nil, err
		}
		img, err := imagebuild.Image(v1.Platform{OS: p.OS, Architecture: p.Arch}, imagebuild.Config{
			Entrypoint: []string{"/usr/local/bin/regcred"},
			Env:        []string{"PATH=/usr/local/bin", "HOME=/home/nonroot"},
			User:       fmt.Sprintf("%d:%d", NonRootUID, NonRootUID),
			WorkingDir: "/home/nonroot",
			Labels:     labels,
			Created:    o.Version.Time,
		}, base, app)
		if err != nil {
			return nil, err
		}
		images = append(images, img)
	}
	return imagebuild.Index(labels, images...)
}

// ImageLabels are the OCI annotations of the image and its index.
func ImageLabels(v Version) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":    "regcred",
		"org.opencontainers.image.version":  v.Version,
		"org.opencontainers.image.revision": v.Commit,
		"org.opencontainers.image.source":   Source,
		"org.opencontainers.image.created":  v.Time.UTC().Format("2006-01-02T15:04:05Z"),
	}
}

func baseFiles(ca []byte) []imagebuild.File {
	uid := NonRootUID
	return []imagebuild.File{
		{Path: "etc", Mode: 0o755, Dir: true},
		{Path: "etc/passwd", Mode: 0o644, Data: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, uid))},
		{Path: "etc/group", Mode: 0o644, Data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", uid))},
		{Path: "etc/nsswitch.conf", Mode: 0o644, Data: []byte("hosts: files dns\n")},
		{Path: "etc/ssl", Mode: 0o755, Dir: true},
		{Path: "etc/ssl/certs", Mode: 0o755, Dir: true},
		{Path: "etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Data: ca},
		{Path: "home", Mode: 0o755, Dir: true},
		{Path: "home/nonroot", Mode: 0o700, Dir: true, UID: uid, GID: uid},
		{Path: "tmp", Mode: 0o1777, Dir: true},
	}
}
