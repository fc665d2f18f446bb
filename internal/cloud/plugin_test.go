package cloud_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"regcred.dev/regcred/internal/cloud"
)

// plugin writes an executable shell script.
func plugin(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plugin")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// answering is a plugin that checks the request and answers for the
// registry it was asked about, counting its runs in a file.
const answering = `
req=$(cat)
echo run >> "$COUNT_FILE"
case "$req" in *'"apiVersion":"credentialprovider.kubelet.k8s.io/v1"'*) ;; *) echo "bad request" >&2; exit 3 ;; esac
case "$req" in *'"kind":"CredentialProviderRequest"'*) ;; *) echo "bad request" >&2; exit 3 ;; esac
image=$(printf '%s' "$req" | sed 's/.*"image":"\([^"]*\)".*/\1/')
printf '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"%s",%s"auth":{"%s":{"username":"robot","password":"%s"}}}' \
  "$KEY_TYPE" "$DURATION" "$image" "$PLUGIN_PASSWORD"
`

func runs(t *testing.T, countFile string) int {
	t.Helper()
	b, err := os.ReadFile(countFile)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run")
}

func TestPluginAnswerPulls(t *testing.T) {
	w := newWorld(t)
	password := "plugin-issued-password"
	w.reg.AllowTemporary("robot", password, time.Now().Add(time.Hour))
	count := filepath.Join(t.TempDir(), "count")
	p := &cloud.Plugin{Command: plugin(t, answering), Registries: []string{w.reg.Host},
		Env: []string{"PLUGIN_PASSWORD=" + password, "COUNT_FILE=" + count, "KEY_TYPE=Registry", `DURATION="cacheDuration":"5m0s",`}}
	before := time.Now()
	tok, err := p.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	a := tok.Config([]string{w.reg.Host}).Auths[w.reg.Host]
	if err := w.pull(t, cloud.Auth{Username: a.Username, Password: a.Password}); err != nil {
		t.Fatalf("pull with the plugin's answer: %v", err)
	}
	if life := tok.ExpiresAt.Sub(before); life < 4*time.Minute || life > 5*time.Minute+time.Second {
		t.Errorf("life %s, want the plugin's cacheDuration 5m", life)
	}
}

func TestPluginCacheKeyTypes(t *testing.T) {
	for _, tt := range []struct {
		keyType  string
		wantRuns int
	}{{"Global", 1}, {"Registry", 2}, {"Image", 2}} {
		t.Run(tt.keyType, func(t *testing.T) {
			count := filepath.Join(t.TempDir(), "count")
			p := &cloud.Plugin{Command: plugin(t, answering), Registries: []string{"a.example.com", "b.example.com:5000"},
				Env: []string{"PLUGIN_PASSWORD=x", "COUNT_FILE=" + count, "KEY_TYPE=" + tt.keyType, "DURATION="}, DefaultCacheDuration: 7 * time.Minute}
			before := time.Now()
			tok, err := p.Fetch(context.Background())
			if tt.keyType == "Global" {
				// A Global answer keyed by one registry does not match the
				// other: the plugin is asked again for it.
				if err != nil {
					t.Fatal(err)
				}
				if got := runs(t, count); got != 2 {
					t.Fatalf("%d runs for a Global answer that names one registry, want 2", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := runs(t, count); got != tt.wantRuns {
				t.Errorf("%d runs, want %d", got, tt.wantRuns)
			}
			if life := tok.ExpiresAt.Sub(before); life < 6*time.Minute || life > 7*time.Minute+time.Second {
				t.Errorf("life %s, want the default cache duration 7m", life)
			}
		})
	}
}

func TestPluginGlobalAnswerServesEveryRegistry(t *testing.T) {
	count := filepath.Join(t.TempDir(), "count")
	cmd := plugin(t, `cat >/dev/null; echo run >> "$COUNT_FILE"
printf '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Global","auth":{"*.example.com":{"username":"u","password":"p"}}}'`)
	p := &cloud.Plugin{Command: cmd, Registries: []string{"a.example.com", "b.example.com", "c.example.com"}, Env: []string{"COUNT_FILE=" + count}}
	tok, err := p.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := runs(t, count); got != 1 {
		t.Errorf("%d runs, want 1: a Global answer serves every registry it matches", got)
	}
	if n := len(tok.Config(p.Registries).Auths); n != 3 {
		t.Errorf("%d entries, want 3", n)
	}
}

func TestPluginFailures(t *testing.T) {
	const secret = "hunter2-secret"
	tests := []struct {
		name    string
		script  string
		command string
		timeout time.Duration
		reason  cloud.Reason
		want    string
	}{
		{name: "hangs", script: "sleep 60", timeout: 300 * time.Millisecond, reason: cloud.TokenRequestFailed, want: "did not answer within 300ms"},
		{name: "garbage", script: "cat >/dev/null; echo 'password=" + secret + " is not json'", reason: cloud.TokenRequestFailed, want: "not a CredentialProviderResponse"},
		{name: "exit status", script: "cat >/dev/null; echo 'token " + secret + "' >&2; exit 4", reason: cloud.TokenRequestFailed, want: "exit status 4"},
		{name: "wrong kind", script: `cat >/dev/null; printf '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1alpha1","kind":"CredentialProviderResponse","cacheKeyType":"Registry"}'`,
			reason: cloud.TokenRequestFailed, want: `apiVersion "credentialprovider.kubelet.k8s.io/v1alpha1"`},
		{name: "bad cache key type", script: `cat >/dev/null; printf '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Forever"}'`,
			reason: cloud.TokenRequestFailed, want: `cacheKeyType "Forever"`},
		{name: "no credentials", script: `cat >/dev/null; printf '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","auth":{"other.example.com":{"username":"u","password":"` + secret + `"}}}'`,
			reason: cloud.TokenRequestFailed, want: "gave no credentials for registry.example.com"},
		{name: "not found", command: "/nonexistent/plugin", reason: cloud.Invalid, want: "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := tt.command
			if cmd == "" {
				cmd = plugin(t, tt.script)
			}
			p := &cloud.Plugin{Command: cmd, Registries: []string{"registry.example.com"}, Timeout: tt.timeout}
			start := time.Now()
			_, err := p.Fetch(context.Background())
			var ce *cloud.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a *cloud.Error", err)
			}
			if ce.Reason != tt.reason || !strings.Contains(ce.Message, tt.want) {
				t.Errorf("got %s %q, want %s containing %q", ce.Reason, ce.Message, tt.reason, tt.want)
			}
			if strings.Contains(ce.Message, secret) {
				t.Errorf("the message shows what the plugin printed: %q", ce.Message)
			}
			if tt.timeout > 0 && time.Since(start) > 10*time.Second {
				t.Errorf("a hanging plugin held the request for %s", time.Since(start))
			}
		})
	}
}

func TestPluginGlobRegistry(t *testing.T) {
	p := &cloud.Plugin{Command: "/bin/true", Registries: []string{"*.example.com"}}
	_, err := p.Fetch(context.Background())
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Reason != cloud.Invalid {
		t.Errorf("got %v, want SourceInvalid for a glob", err)
	}
}
