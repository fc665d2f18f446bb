package credhelpers

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadFileForRegistry: a config.json's credential helper for the
// registry is run as docker runs it; one without helpers reads as ReadFile
// does; a helper that fails is a HelperError that does not repeat what the
// helper printed.
func TestReadFileForRegistry(t *testing.T) {
	dir := t.TempDir()
	helper := `#!/bin/sh
read server
case "$1" in
get) if [ "$server" = "helped.example.com" ]; then printf '{"ServerURL":"%s","Username":"robot","Secret":"s3cr3t"}' "$server"; else echo "credentials not found in native keychain"; exit 1; fi ;;
list) printf '{"helped.example.com":"robot"}' ;;
*) exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-test"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-broken"), []byte("#!/bin/sh\necho leaked-s3cr3t\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	helpers := write("helpers.json", `{"auths": {"plain.example.com": {"auth": "dTpw"}}, "credHelpers": {"helped.example.com": "test"}}`)
	cfg, err := ReadFileForRegistry(helpers, "helped.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.Auths["helped.example.com"]; len(cfg.Auths) != 1 || e.Username != "robot" || e.Password != "s3cr3t" {
		t.Errorf("helped.example.com: %v", cfg.Auths)
	}
	if cfg, err := ReadFileForRegistry(helpers, "plain.example.com"); err != nil || cfg.Auths["plain.example.com"].Username != "u" {
		t.Errorf("plain.example.com beside a helper: %v, %v", cfg, err)
	}
	if cfg, err := ReadFileForRegistry(helpers, "elsewhere.example.com"); err != nil || len(cfg.Auths) != 0 {
		t.Errorf("a registry nobody has credentials for: %v, %v, want an empty config", cfg, err)
	}

	// No helpers: the strict reading, path keys kept as written.
	cfg, err = ReadFileForRegistry(write("plain.json", `{"auths": {"harbor.example.com/team": {"auth": "dTpw"}}}`), "harbor.example.com")
	if err != nil || len(cfg.Auths) != 1 || cfg.Auths["harbor.example.com/team"].Username != "u" {
		t.Errorf("plain: %v, %v", cfg, err)
	}
	if _, err := ReadFileForRegistry(write("bad.json", `{"auths": {"x": {"auth": "!!"}}}`), "x"); err == nil {
		t.Error("a malformed auth was read")
	}

	for _, read := range []func(string) error{
		func(p string) error { _, err := ReadFileForRegistry(p, "broken.example.com"); return err },
		func(p string) error { _, err := ReadDockerCLIConfig(p, []string{"broken.example.com"}); return err },
	} {
		err = read(write("broken.json", `{"credsStore": "broken"}`))
		var he *HelperError
		if !errors.As(err, &he) || strings.Contains(err.Error(), "leaked-s3cr3t") {
			t.Errorf("a failing helper: %v, want a HelperError without its output", err)
		}
	}

	if _, err := ReadDockerCLIConfig(write("only.json", `{"credHelpers": {"helped.example.com": "test"}}`), []string{"other.example.com"}); err == nil || !strings.Contains(err.Error(), "no credentials for other.example.com") {
		t.Errorf("a registry without credentials: %v", err)
	}
}
