package imagebuild

import (
	"archive/tar"
	"io"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

var epoch = time.Unix(1700000000, 0).UTC()

func TestLayerIsDeterministicAndOrdered(t *testing.T) {
	files := []File{{Path: "b", Mode: 0o644, Data: []byte("b")}, {Path: "a", Mode: 0o755, Dir: true}, {Path: "a/x", Mode: 0o600, Data: []byte("x"), UID: 7, GID: 8}}
	l1, err := Layer(files, epoch)
	if err != nil {
		t.Fatal(err)
	}
	// The same files in another order give the same layer.
	l2, err := Layer([]File{files[2], files[0], files[1]}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := l1.Digest()
	d2, _ := l2.Digest()
	if d1 != d2 {
		t.Errorf("digests %s and %s for the same files", d1, d2)
	}
	rc, err := l1.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s mtime %v", h.Name, h.ModTime)
		}
		if h.Name == "a/x" && (h.Uid != 7 || h.Gid != 8 || h.Mode != 0o600) {
			t.Errorf("a/x header %+v", h)
		}
		names = append(names, h.Name)
	}
	if got := strings.Join(names, " "); got != "a/ a/x b" {
		t.Errorf("entries %q, want path order", got)
	}
	l3, err := Layer(files, epoch.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if d3, _ := l3.Digest(); d3 == d1 {
		t.Error("another time gave the same layer")
	}
}

func TestLayerRejectsBadPaths(t *testing.T) {
	for _, p := range []string{"", "/etc/passwd", "../x", "a/../b", "a//b", "./a"} {
		if _, err := Layer([]File{{Path: p, Mode: 0o644}}, epoch); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
	if _, err := Layer([]File{{Path: "a"}, {Path: "a"}}, epoch); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a duplicate path: %v", err)
	}
}

func TestImageAndIndex(t *testing.T) {
	l, err := Layer([]File{{Path: "app", Mode: 0o755, Data: []byte("#")}}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	img, err := Image(v1.Platform{OS: "linux", Architecture: "arm64"}, Config{Entrypoint: []string{"/app"}, User: "1:1", Labels: map[string]string{"k": "v"}, Created: epoch}, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "arm64" || cf.Config.User != "1:1" || cf.Config.Labels["k"] != "v" || !cf.Created.Time.Equal(epoch) || len(cf.History) != 1 || len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("config %+v", cf)
	}
	mt, _ := img.MediaType()
	if mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type %s", mt)
	}
	idx, err := Index(map[string]string{"a": "b"}, img)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].Platform.Architecture != "arm64" || m.Annotations["a"] != "b" {
		t.Errorf("index %+v", m)
	}
}
