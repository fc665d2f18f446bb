package testenv

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// update is the one -update flag of every test binary: `go test -update`
// rewrites the golden files instead of comparing with them. Only test
// binaries get it, so a program built on the harness (bench, hack/demo)
// keeps its own flags.
var update = new(bool)

func init() {
	if testing.Testing() {
		flag.BoolVar(update, "update", false, "rewrite the golden files")
	}
}

// Golden compares got with the golden file at path, or, under -update,
// writes got there (creating its directory).
func Golden(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (rerun with -update and review the diff):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
