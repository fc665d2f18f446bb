package cloud_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	cmd := plugin(t, answering)
	p := &cloud.Plugin{Command: cmd, Dir: filepath.Dir(cmd), Registries: []string{w.reg.Host},
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
			cmd := plugin(t, answering)
			p := &cloud.Plugin{Command: cmd, Dir: filepath.Dir(cmd), Registries: []string{"a.example.com", "b.example.com:5000"},
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
	p := &cloud.Plugin{Command: cmd, Dir: filepath.Dir(cmd), Registries: []string{"a.example.com", "b.example.com", "c.example.com"}, Env: []string{"COUNT_FILE=" + count}}
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
		{name: "not found", command: "missing", reason: cloud.Invalid, want: "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := tt.command
			switch cmd {
			case "":
				cmd = plugin(t, tt.script)
			case "missing":
				cmd = filepath.Join(t.TempDir(), "plugin")
			}
			p := &cloud.Plugin{Command: cmd, Dir: filepath.Dir(cmd), Registries: []string{"registry.example.com"}, Timeout: tt.timeout}
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

// answer is a plugin that answers for any registry, without checking.
const answer = `cat >/dev/null
printf '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Global","auth":{"r.example.com":{"username":"u","password":"p"}}}'
`

// fetchErr runs p and returns its *cloud.Error.
func fetchErr(t *testing.T, p *cloud.Plugin) *cloud.Error {
	t.Helper()
	_, err := p.Fetch(context.Background())
	var ce *cloud.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want a *cloud.Error", err)
	}
	return ce
}

// TestPluginSymlinkOutOfDir: a link inside --credential-provider-dir to a
// program outside it is refused, and the program does not run; a link
// that stays inside runs.
func TestPluginSymlinkOutOfDir(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(t.TempDir(), "count")
	outside := plugin(t, `echo run >> "$COUNT_FILE"; `+answer)
	link := filepath.Join(dir, "plugin")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	ce := fetchErr(t, &cloud.Plugin{Command: link, Dir: dir, Registries: []string{"r.example.com"}, Env: []string{"COUNT_FILE=" + count}})
	if ce.Reason != cloud.Invalid || !strings.Contains(ce.Message, "outside "+dir) {
		t.Errorf("got %s %q, want SourceInvalid: resolves outside the directory", ce.Reason, ce.Message)
	}
	// A lexical check passes ../ too: the resolved path is what counts.
	dotdot := filepath.Join(dir, "..", filepath.Base(filepath.Dir(outside)), "plugin")
	if ce := fetchErr(t, &cloud.Plugin{Command: dotdot, Dir: dir, Registries: []string{"r.example.com"}}); ce.Reason != cloud.Invalid {
		t.Errorf("a path through .. : %s %q", ce.Reason, ce.Message)
	}
	if n := runs(t, count); n != 0 {
		t.Errorf("the program outside the directory ran %d times", n)
	}

	inside := filepath.Join(dir, "real")
	if err := os.WriteFile(inside, []byte("#!/bin/sh\n"+answer), 0o755); err != nil {
		t.Fatal(err)
	}
	alias := filepath.Join(dir, "alias")
	if err := os.Symlink(inside, alias); err != nil {
		t.Fatal(err)
	}
	if _, err := (&cloud.Plugin{Command: alias, Dir: dir, Registries: []string{"r.example.com"}}).Fetch(context.Background()); err != nil {
		t.Errorf("a link inside the directory: %v", err)
	}
	// No directory: no plugin.
	if ce := fetchErr(t, &cloud.Plugin{Command: inside, Registries: []string{"r.example.com"}}); ce.Reason != cloud.Invalid {
		t.Errorf("no Dir: %s %q", ce.Reason, ce.Message)
	}
}

// TestPluginEnv: the plugin gets PATH and the spec's variables, nothing
// of the manager's; variables that change what code runs are refused
// before the plugin starts.
func TestPluginEnv(t *testing.T) {
	t.Setenv("REGCRED_MANAGER_ONLY", "manager-secret")
	envFile := filepath.Join(t.TempDir(), "env")
	cmd := plugin(t, `env > "$ENV_FILE"; `+answer)
	p := &cloud.Plugin{Command: cmd, Dir: filepath.Dir(cmd), Registries: []string{"r.example.com"}, Env: []string{"ENV_FILE=" + envFile, "SETTING=a=b"}}
	if _, err := p.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	env := string(b)
	for _, want := range []string{"PATH=/usr/bin:/bin\n", "SETTING=a=b\n", "ENV_FILE=" + envFile + "\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("the plugin's environment lacks %q:\n%s", want, env)
		}
	}
	if strings.Contains(env, "REGCRED_MANAGER_ONLY") || strings.Contains(env, "HOME=") {
		t.Errorf("the plugin sees the manager's environment:\n%s", env)
	}

	for _, kv := range []string{"LD_PRELOAD=/tmp/evil.so", "LD_LIBRARY_PATH=/tmp", "PATH=/tmp/evil:/usr/bin", "DYLD_INSERT_LIBRARIES=/tmp/x", "GCONV_PATH=/tmp", "BASH_ENV=/tmp/x", "OPENSSL_CONF=/tmp/x.cnf", "PYTHONPATH=/tmp", "NODE_OPTIONS=--require=/tmp/x.js", "JAVA_TOOL_OPTIONS=-javaagent:/tmp/x.jar", "=x"} {
		_ = os.Remove(envFile)
		p := &cloud.Plugin{Command: cmd, Dir: filepath.Dir(cmd), Registries: []string{"r.example.com"}, Env: []string{"ENV_FILE=" + envFile, kv}}
		ce := fetchErr(t, p)
		name, _, _ := strings.Cut(kv, "=")
		if ce.Reason != cloud.Invalid || !strings.Contains(ce.Message, "env "+name) && name != "" {
			t.Errorf("env %s: got %s %q, want SourceInvalid naming it", kv, ce.Reason, ce.Message)
		}
		if _, err := os.Stat(envFile); err == nil {
			t.Errorf("env %s: the plugin ran", kv)
		}
	}
}

// TestPluginOutputBounded: a plugin printing 10 MiB (or forever) on
// stdout or stderr is stopped at 64 KiB with a one-line error.
func TestPluginOutputBounded(t *testing.T) {
	for name, script := range map[string]string{
		"10 MiB stdout":        "cat >/dev/null; head -c 10485760 /dev/zero",
		"10 MiB stderr":        "cat >/dev/null; head -c 10485760 /dev/zero >&2; " + answer,
		"forever, no SIGPIPE":  "cat >/dev/null; trap '' PIPE; yes hunter2-secret",
		"answer then too much": answer + "head -c 10485760 /dev/zero",
	} {
		t.Run(name, func(t *testing.T) {
			cmd := plugin(t, script)
			start := time.Now()
			ce := fetchErr(t, &cloud.Plugin{Command: cmd, Dir: filepath.Dir(cmd), Registries: []string{"r.example.com"}, Timeout: 20 * time.Second})
			if ce.Reason != cloud.TokenRequestFailed || !strings.Contains(ce.Message, "more than 65536 bytes") {
				t.Errorf("got %s %q, want a bounded-output error", ce.Reason, ce.Message)
			}
			if strings.Contains(ce.Message, "\n") || len(ce.Message) > 200 || strings.Contains(ce.Message, "hunter2") {
				t.Errorf("message %q: want one short line quoting nothing", ce.Message)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s: the plugin was not stopped at the cap", d)
			}
		})
	}
}

// TestPluginLeavesNoProcess: a plugin that starts a background child and
// answers leaves nothing running once its answer is in (the child, which
// holds stdout open, is killed with the plugin's group, not outlived).
func TestPluginLeavesNoProcess(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := plugin(t, `sleep 300 &
echo $! > "$PID_FILE"
`+answer)
	if _, err := (&cloud.Plugin{Command: cmd, Dir: filepath.Dir(cmd), Registries: []string{"r.example.com"}, Env: []string{"PID_FILE=" + pidFile}}).Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the plugin's child %d still runs after the plugin answered", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
