package cli

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// TestMirrorBetweenRegistries copies between two real registries with
// different auth (htpasswd to bearer token), including a multi-platform
// index, resuming after an interrupted run.
func TestMirrorBetweenRegistries(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	ctx := context.Background()
	src, err := testregistry.Start(testregistry.Basic)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := testregistry.Start(testregistry.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()

	if _, err := src.PushRandomImage(ctx, "app/web:1"); err != nil {
		t.Fatal(err)
	}
	var platforms []v1.Image
	idx := v1.ImageIndex(empty.Index)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(256, 2)
		if err != nil {
			t.Fatal(err)
		}
		platforms = append(platforms, img)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	multiRef, _ := name.ParseReference(src.Ref("app/multi:2"))
	if err := remote.WriteIndex(multiRef, idx, src.RemoteOptions(ctx, src.Auth())...); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()

	dir := t.TempDir()
	config := writeFile(t, dir, "config.json", string(src.DockerConfigJSON(t)))
	pw := writeFile(t, dir, "pw", dst.User.Password+"\n")
	dest := dst.Host + "/mirror"
	prefix := dest + "/" + strings.ReplaceAll(src.Host, ":", "-")

	// An earlier run that was cut off: web:1 made it, and one platform of
	// multi:2 was uploaded before the index was.
	webDst, _ := name.ParseReference(prefix + "/app/web:1")
	webSrcImg, err := remote.Image(mustRef(t, src.Ref("app/web:1")), src.RemoteOptions(ctx, src.Auth())...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(webDst, webSrcImg, dst.RemoteOptions(ctx, dst.Auth())...); err != nil {
		t.Fatal(err)
	}
	d0, _ := platforms[0].Digest()
	part, _ := name.ParseReference(prefix + "/app/multi@" + d0.String())
	if err := remote.Write(part, platforms[0], dst.RemoteOptions(ctx, dst.Auth())...); err != nil {
		t.Fatal(err)
	}

	images := writeFile(t, dir, "images.txt", "# what the chart needs\n"+src.Ref("app/web:1")+"\n\n"+src.Ref("app/multi:2")+"\n")
	base := []string{"mirror", "--to", dest, "--docker-config", config, "--to-username", dst.User.Name, "--to-password-file", pw,
		"--ca-file", src.CAFile, "--ca-file", dst.CAFile}
	out, stderr, code := run(t, "", append(base, "--images-file", images, src.Ref("app/missing:0"))...)
	if code != exitFailure {
		t.Fatalf("exit %d with a missing image, want 1\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{
		"present  " + prefix + "/app/web:1",
		"copied   " + src.Ref("app/multi:2") + " -> " + prefix + "/app/multi:2",
		"2 platforms",
		"FAILED   " + src.Ref("app/missing:0") + ": NotFound",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(out, "3 images: 1 copied, 1 already present, 1 failed") || !strings.Contains(out, "failed: "+src.Ref("app/missing:0")+": NotFound") {
		t.Errorf("summary:\n%s", out)
	}

	// The copy is the same index, with both platforms.
	got, err := remote.Index(mustRef(t, prefix+"/app/multi:2"), dst.RemoteOptions(ctx, dst.Auth())...)
	if err != nil {
		t.Fatal(err)
	}
	gotDigest, _ := got.Digest()
	m, _ := got.IndexManifest()
	if gotDigest != idxDigest || len(m.Manifests) != 2 {
		t.Errorf("copied index %s with %d manifests, want %s with 2", gotDigest, len(m.Manifests), idxDigest)
	}
	for _, desc := range m.Manifests {
		if _, err := remote.Image(mustRef(t, prefix+"/app/multi@"+desc.Digest.String()), dst.RemoteOptions(ctx, dst.Auth())...); err != nil {
			t.Errorf("platform %s missing: %v", desc.Platform, err)
		}
	}

	// The printed rule points manifests at the copies.
	rule := regexp.MustCompile(`--mirror (\S+)`).FindStringSubmatch(out)
	if rule == nil || rule[1] != src.Host+"="+prefix {
		t.Fatalf("printed rules: %s", out)
	}
	manifest := "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: m\n    image: " + src.Ref("app/multi:2") + "\n"
	rewritten, _, _ := run(t, manifest, "manifests", "rewrite", "--mirror", rule[1])
	img := regexp.MustCompile(`image: (\S+)`).FindStringSubmatch(rewritten)[1]
	if _, err := remote.Head(mustRef(t, img), dst.RemoteOptions(ctx, dst.Auth())...); err != nil {
		t.Errorf("rewritten image %s is not in the mirror: %v", img, err)
	}

	// Run again: everything is there, nothing is copied.
	out, stderr, code = run(t, "", append(base, "--images-file", images)...)
	if code != 0 || !strings.Contains(out, "2 images: 0 copied, 2 already present, 0 failed") {
		t.Errorf("second run: exit %d\n%s\n%s", code, out, stderr)
	}

	// Wrong destination password: named as Unauthorized.
	bad := writeFile(t, dir, "bad", "wrong")
	out, _, code = run(t, "", "mirror", "--to", dest+"/other", "--docker-config", config, "--to-username", dst.User.Name, "--to-password-file", bad,
		"--ca-file", src.CAFile, "--ca-file", dst.CAFile, src.Ref("app/web:1"))
	if code != exitFailure || !strings.Contains(out, "Unauthorized") {
		t.Errorf("wrong destination password: exit %d\n%s", code, out)
	}
	if strings.Contains(out, dst.User.Password) || strings.Contains(out, src.User.Password) {
		t.Error("a password leaked into the output")
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMirrorBadInput(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", "p")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"mirror", "nginx"}, "--to is required"},
		{[]string{"mirror", "--to", "mirror", "nginx"}, "give a registry host"},
		{[]string{"mirror", "--to", "harbor.internal/m"}, "no images"},
		{[]string{"mirror", "--to", "harbor.internal/m", "Not/Valid:"}, "invalid image reference"},
		{[]string{"mirror", "--to", "harbor.internal/m", "--to-password-file", pw, "nginx"}, "--to-username goes with"},
		{[]string{"mirror", "--to", "harbor.internal/m", "--images-file", filepath.Join(dir, "none"), "nginx"}, "no such file"},
		{[]string{"mirror", "--to", "harbor.internal/m", "--jobs", "0", "nginx"}, "--jobs must be at least 1"},
	} {
		_, stderr, code := run(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
