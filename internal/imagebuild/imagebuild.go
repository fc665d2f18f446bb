// Package imagebuild makes OCI images from files, without a container
// engine: one tar layer per file set, a config, and an index over
// platforms. Every timestamp is the caller's, and files are written in
// path order, so the same input gives the same digest.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one entry of a layer: a regular file, or a directory when Dir
// is set. Path is relative to the root ("etc/passwd").
type File struct {
	Path string
	Mode int64
	Data []byte
	Dir  bool
	UID  int
	GID  int
}

// Layer is a gzip-compressed OCI layer holding files, each stamped with
// mtime. Parent directories must be listed themselves.
func Layer(files []File, mtime time.Time) (v1.Layer, error) {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, f := range sorted {
		clean := path.Clean(f.Path)
		if f.Path == "" || path.IsAbs(f.Path) || clean != f.Path || strings.HasPrefix(clean, "..") {
			return nil, fmt.Errorf("layer file %q: want a clean relative path", f.Path)
		}
		if i > 0 && sorted[i-1].Path == f.Path {
			return nil, fmt.Errorf("layer file %q listed twice", f.Path)
		}
		h := &tar.Header{Name: f.Path, Mode: f.Mode, Uid: f.UID, Gid: f.GID, ModTime: mtime, Format: tar.FormatPAX}
		if f.Dir {
			h.Typeflag, h.Name = tar.TypeDir, f.Path+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if !f.Dir {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	uncompressed := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(uncompressed)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestCompression))
}

// Config is what an image runs, and how it is described.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	// User is "UID:GID" or a name from the image's /etc/passwd.
	User       string
	WorkingDir string
	// Labels go into the image config (and, by Index, the index's
	// annotations).
	Labels map[string]string
	// Created is the image's creation time; a fixed one (the commit's)
	// keeps builds reproducible.
	Created time.Time
}

// Image is an OCI image for platform, of layers in order.
func Image(platform v1.Platform, cfg Config, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var history []v1.History
	for range layers {
		history = append(history, v1.History{Created: v1.Time{Time: cfg.Created}, CreatedBy: "regcred imagebuild"})
	}
	img, err := mutate.Append(img, addenda(layers, history)...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	cf.Created = v1.Time{Time: cfg.Created}
	cf.Config.Entrypoint = cfg.Entrypoint
	cf.Config.Cmd = cfg.Cmd
	cf.Config.Env = cfg.Env
	cf.Config.User = cfg.User
	cf.Config.WorkingDir = cfg.WorkingDir
	cf.Config.Labels = cfg.Labels
	return mutate.ConfigFile(img, cf)
}

func addenda(layers []v1.Layer, history []v1.History) []mutate.Addendum {
	out := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		out[i] = mutate.Addendum{Layer: l, History: history[i], MediaType: types.OCILayer}
	}
	return out
}

// Index is an OCI image index over images, each described by the
// platform of its config, with annotations.
func Index(annotations map[string]string, images ...v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		p := cf.Platform()
		if p == nil || p.OS == "" {
			return nil, fmt.Errorf("image without a platform")
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	if len(annotations) > 0 {
		idx = mutate.Annotations(idx, annotations).(v1.ImageIndex)
	}
	return idx, nil
}
