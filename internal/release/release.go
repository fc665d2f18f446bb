package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

var semverRE = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// SemVer is v's version as krew and Helm want it: a tag like v1.2.3 as
// is, anything else (a commit, a dirty tree) as a pre-release of v0.0.0.
func SemVer(v Version) string {
	if semverRE.MatchString(v.Version) {
		return v.Version
	}
	pre := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, v.Version)
	if pre == "" {
		pre = "dev"
	}
	return "v0.0.0-" + pre
}

// Archive is one CLI archive of a release.
type Archive struct {
	Platform Platform
	// Name is the file name in the release directory.
	Name   string
	SHA256 string
}

// ArchiveName is the CLI archive's file name for p.
func ArchiveName(v Version, p Platform) string {
	return fmt.Sprintf("regcred_%s_%s_%s.tar.gz", SemVer(v), p.OS, p.Arch)
}

// BuildArchives builds the CLI for each platform into out as a tar.gz
// holding the binary (regcred or regcred.exe), stamped with v's time.
func BuildArchives(ctx context.Context, moduleDir string, v Version, platforms []Platform, out string) ([]Archive, error) {
	bins, done, err := newBinaries(moduleDir, v, "")
	if err != nil {
		return nil, err
	}
	defer done()
	return buildArchives(ctx, bins, platforms, out)
}

func buildArchives(ctx context.Context, bins *binaries, platforms []Platform, out string) ([]Archive, error) {
	var archives []Archive
	for _, p := range platforms {
		data, err := bins.get(ctx, p)
		if err != nil {
			return nil, err
		}
		a := Archive{Platform: p, Name: ArchiveName(bins.version, p)}
		if a.SHA256, err = writeArchive(filepath.Join(out, a.Name), BinaryName(p), data, bins.version); err != nil {
			return nil, err
		}
		archives = append(archives, a)
	}
	return archives, nil
}

func writeArchive(path, name string, data []byte, v Version) (string, error) {
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return "", err
	}
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: v.Time, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return "", err
	}
	if _, err := tw.Write(data); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := gz.Close(); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:]), nil
}

// WriteChecksums writes dir/checksums.txt in sha256sum's format over
// every regular file directly in dir (not the image layout's blobs, which
// are content-addressed already), sorted by name.
func WriteChecksums(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == "checksums.txt" {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), e.Name())
	}
	return os.WriteFile(filepath.Join(dir, "checksums.txt"), []byte(b.String()), 0o644)
}

// KrewManifest is the krew index's Plugin for the archives, downloaded
// from baseURL (the release's download address).
func KrewManifest(v Version, archives []Archive, baseURL string) ([]byte, error) {
	type selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	}
	type platform struct {
		Selector selector `json:"selector"`
		URI      string   `json:"uri"`
		SHA256   string   `json:"sha256"`
		Bin      string   `json:"bin"`
	}
	var platforms []platform
	sorted := slices.Clone(archives)
	slices.SortFunc(sorted, func(a, b Archive) int { return strings.Compare(a.Name, b.Name) })
	for _, a := range sorted {
		platforms = append(platforms, platform{
			Selector: selector{MatchLabels: map[string]string{"os": a.Platform.OS, "arch": a.Platform.Arch}},
			URI:      strings.TrimSuffix(baseURL, "/") + "/" + a.Name,
			SHA256:   a.SHA256,
			Bin:      BinaryName(a.Platform),
		})
	}
	if len(platforms) == 0 {
		return nil, fmt.Errorf("krew manifest: no archives")
	}
	plugin := map[string]any{
		"apiVersion": "krew.googlecontainertools.github.com/v1alpha2",
		"kind":       "Plugin",
		"metadata":   map[string]any{"name": "regcred"},
		"spec": map[string]any{
			"version":          SemVer(v),
			"homepage":         Source,
			"shortDescription": "Registry pull credentials for every namespace, and why a pull fails",
			"description": `regcred keeps image pull Secrets in the namespaces that need them, adds
them to ServiceAccounts and Pods, and explains pull failures. As a kubectl
plugin it runs the regcred CLI: check a credential against a registry,
resolve which Secrets a Pod's images need, create pull Secrets, inject
pull Secrets into manifests, and mirror images for air-gapped clusters.
The controller and webhook install with the Helm chart.`,
			"platforms": platforms,
		},
	}
	return yaml.Marshal(plugin)
}
