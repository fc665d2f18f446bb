package manifests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"regcred.dev/regcred/internal/mirror"
	"regcred.dev/regcred/internal/testenv"
)

func corpus(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "corpus.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	creds = []Credential{
		{SecretName: "regcred-harbor", Registries: []string{"harbor.internal"}},
		{SecretName: "regcred-hub", Registries: []string{"docker.io"}},
	}
	rules = mirror.MustCompile([]mirror.Rule{{Source: "docker.io", Mirror: "harbor.internal/dockerhub"}, {Source: "registry.k8s.io", Mirror: "harbor.internal/k8s"}})
)

func run(t *testing.T, in []byte, opts Options) ([]byte, *Stats) {
	t.Helper()
	var out bytes.Buffer
	stats, err := Transform(bytes.NewReader(in), &out, opts)
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), stats
}

func TestInjectGolden(t *testing.T) {
	out, stats := run(t, corpus(t), Options{Credentials: creds})
	testenv.Golden(t, filepath.Join("testdata", "inject.golden.yaml"), out)
	if stats.Documents != 15 || stats.Workloads != 10 || stats.Injected != 11 {
		t.Errorf("stats %+v", stats)
	}
	// Idempotent.
	again, stats := run(t, out, Options{Credentials: creds})
	if !bytes.Equal(again, out) || stats.Injected != 0 {
		t.Errorf("a second inject changed the stream (%d injected)", stats.Injected)
	}
}

func TestRewriteGolden(t *testing.T) {
	out, stats := run(t, corpus(t), Options{Rules: rules})
	testenv.Golden(t, filepath.Join("testdata", "rewrite.golden.yaml"), out)
	if stats.Rewritten != 6 {
		t.Errorf("rewritten %d", stats.Rewritten)
	}
	again, stats := run(t, out, Options{Rules: rules})
	if !bytes.Equal(again, out) || stats.Rewritten != 0 {
		t.Error("a second rewrite changed the stream")
	}
}

func TestRewriteThenInjectGolden(t *testing.T) {
	out, _ := run(t, corpus(t), Options{Rules: rules, Credentials: creds})
	testenv.Golden(t, filepath.Join("testdata", "rewrite-inject.golden.yaml"), out)
}

// TestUntouchedDocumentsAreByteIdentical: documents regcred does not change
// come out exactly as they went in, comments and all.
func TestUntouchedDocumentsAreByteIdentical(t *testing.T) {
	in := corpus(t)
	out, _ := run(t, in, Options{Credentials: creds})
	inDocs, err := ReadStream(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	outDocs, err := ReadStream(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(inDocs) != len(outDocs) {
		t.Fatalf("%d documents in, %d out", len(inDocs), len(outDocs))
	}
	for _, i := range []int{0, 3, 11, 12, 13} { // header, already-injected Job, comment-only, ConfigMap, custom Deployment
		if inDocs[i].Raw() != outDocs[i].Raw() {
			t.Errorf("document %d changed:\n%q\n%q", i+1, inDocs[i].Raw(), outDocs[i].Raw())
		}
	}
	for _, keep := range []string{"# Source: shop/templates/deployment.yaml", "# a flow map", "someFutureField: kept as is", "# not a container image: untouched"} {
		if !bytes.Contains(out, []byte(keep)) {
			t.Errorf("output lost %q", keep)
		}
	}
}

func TestNothingToDoIsIdentity(t *testing.T) {
	in := corpus(t)
	out, _ := run(t, in, Options{})
	if !bytes.Equal(in, out) {
		t.Error("a transform with no rules or credentials changed the stream")
	}
}

func TestInvalidYAMLNamesDocumentAndLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		// The YAML parser reports a bad indentation at the mapping it breaks.
		{"apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n   image: bad-indent\n---\nkind: x\n",
			"document 2 (line 6 of the stream): invalid YAML: did not find expected key"},
		{"kind: A\n---\nkind: B\n---\nkind: C\nspec:\n\tcontainers: []\n",
			"document 3 (line 7 of the stream): invalid YAML: found character that cannot start any token"},
		{"a: [1, 2\n", "document 1 (line 1 of the stream): invalid YAML: did not find expected ',' or ']'"},
	} {
		var out bytes.Buffer
		_, err := Transform(strings.NewReader(tc.in), &out, Options{Credentials: creds})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
		if out.Len() != 0 {
			t.Error("output written for a stream that does not parse")
		}
	}
}

func TestImages(t *testing.T) {
	docs, err := ReadStream(bytes.NewReader(corpus(t)))
	if err != nil {
		t.Fatal(err)
	}
	got, warnings, err := Images(docs)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, filepath.Join("testdata", "images.golden.txt"), []byte(strings.Join(got, "\n")+"\n"))
	if len(warnings) != 0 {
		t.Errorf("warnings %v", warnings)
	}
}

func TestBadImagesAreWarnings(t *testing.T) {
	in := "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n    image: $(IMAGE)\n  - name: b\n    image: harbor.internal/x:1\n"
	out, stats := run(t, []byte(in), Options{Credentials: creds})
	if len(stats.Warnings) != 1 || !strings.Contains(stats.Warnings[0], "line 6") {
		t.Errorf("warnings %v", stats.Warnings)
	}
	if !bytes.Contains(out, []byte("regcred-harbor")) || !bytes.Contains(out, []byte("$(IMAGE)")) {
		t.Errorf("output:\n%s", out)
	}
}

func FuzzTransform(f *testing.F) {
	f.Add(corpus(&testing.T{}))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("kind: List\napiVersion: v1\nitems: [1, {kind: Pod, apiVersion: v1, spec: {containers: [{image: nginx}]}}]\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		if _, err := Transform(bytes.NewReader(in), &out, Options{Rules: rules, Credentials: creds}); err != nil {
			return
		}
		// Whatever parsed once parses again with the same number of
		// documents: nothing is dropped.
		a, err := ReadStream(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		b, err := ReadStream(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, out.Bytes())
		}
		if len(a) != len(b) {
			t.Fatalf("%d documents in, %d out", len(a), len(b))
		}
	})
}
