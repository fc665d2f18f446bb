package dockercfg

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadFileWithHelpers: a config.json's credential helpers are run as
// docker runs them; one without helpers reads as ReadFile does; a helper
// that fails is a HelperError.
func TestReadFileWithHelpers(t *testing.T) {
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
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-broken"), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
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

	cfg, err := ReadFileWithHelpers(write("helpers.json", `{"auths": {"plain.example.com": {"auth": "dTpw"}}, "credHelpers": {"helped.example.com": "test"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.Auths["helped.example.com"]; e.Username != "robot" || e.Password != "s3cr3t" {
		t.Errorf("helped.example.com: %v", cfg.Auths)
	}
	if e := cfg.Auths["plain.example.com"]; e.Username != "u" || e.Password != "p" {
		t.Errorf("plain.example.com: %v", cfg.Auths)
	}

	// No helpers: the strict reading, path keys kept as written.
	cfg, err = ReadFileWithHelpers(write("plain.json", `{"auths": {"harbor.example.com/team": {"auth": "dTpw"}}}`))
	if err != nil || len(cfg.Auths) != 1 || cfg.Auths["harbor.example.com/team"].Username != "u" {
		t.Errorf("plain: %v, %v", cfg, err)
	}
	if _, err := ReadFileWithHelpers(write("bad.json", `{"auths": {"x": {"auth": "!!"}}}`)); err == nil {
		t.Error("a malformed auth was read")
	}

	_, err = ReadFileWithHelpers(write("broken.json", `{"credsStore": "broken"}`))
	var he *HelperError
	if !errors.As(err, &he) {
		t.Errorf("a failing helper: %v, want a HelperError", err)
	}

	if _, err := ReadDockerCLIConfig(write("only.json", `{"credHelpers": {"helped.example.com": "test"}}`), []string{"other.example.com"}); err == nil || !strings.Contains(err.Error(), "no credentials for other.example.com") {
		t.Errorf("a registry without credentials: %v", err)
	}
}
