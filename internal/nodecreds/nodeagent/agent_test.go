package nodeagent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/pki"
	"regcred.dev/regcred/internal/testenv"
)

type node struct {
	exe, plugins, config, source string
	caPEM                        []byte
}

func newNode(t *testing.T) *node {
	t.Helper()
	root := t.TempDir()
	n := &node{
		exe:     filepath.Join(root, "regcred"),
		plugins: filepath.Join(root, "plugins"),
		config:  filepath.Join(root, "var", "lib", "regcred", "node-credentials"),
		source:  filepath.Join(root, "configmap"),
	}
	for _, d := range []string{n.plugins, n.source} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := pki.NewCA("broker-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n.caPEM = ca.CertPEM
	write(t, n.exe, "binary v1", 0o755)
	write(t, filepath.Join(n.source, nodecreds.CAFile), string(n.caPEM), 0o644)
	write(t, filepath.Join(n.source, nodecreds.ServerNameFile), "regcred-webhook.regcred-system.svc", 0o644)
	return n
}

func (n *node) opts() Options {
	return Options{PluginDir: n.plugins, ConfigDir: n.config, SourceDir: n.source, Server: "https://10.96.0.12:443", Executable: n.exe}
}

func write(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// noTemp: no temporary file is left behind in dir.
func noTemp(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", filepath.Join(dir, e.Name()))
		}
	}
}

func TestSync(t *testing.T) {
	n := newNode(t)
	a, err := New(n.opts())
	if err != nil {
		t.Fatal(err)
	}
	plugin := filepath.Join(n.plugins, nodecreds.PluginName)
	server := filepath.Join(n.config, nodecreds.ServerFile)
	name := filepath.Join(n.config, nodecreds.ServerNameFile)
	ca := filepath.Join(n.config, nodecreds.CAFile)

	changed, err := a.Sync()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{plugin, server, name, ca}; !slices.Equal(changed, want) {
		t.Errorf("first pass changed %v, want %v", changed, want)
	}
	for p, want := range map[string]string{plugin: "binary v1", server: "https://10.96.0.12:443\n", name: "regcred-webhook.regcred-system.svc\n", ca: string(n.caPEM)} {
		if got := read(t, p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if m := mode(t, plugin); m != 0o755 {
		t.Errorf("plugin mode %o", m)
	}
	for _, p := range []string{server, name, ca} {
		if m := mode(t, p); m != 0o644 {
			t.Errorf("%s mode %o", p, m)
		}
	}

	// Nothing changed: nothing written.
	if changed, err := a.Sync(); err != nil || len(changed) != 0 {
		t.Errorf("second pass changed %v, %v", changed, err)
	}

	// Someone edits the plugin and the CA on the node: both are put back.
	write(t, plugin, "tampered", 0o755)
	write(t, ca, "garbage", 0o644)
	if changed, err := a.Sync(); err != nil || !slices.Equal(changed, []string{plugin, ca}) {
		t.Errorf("pass after tampering changed %v, %v", changed, err)
	}
	if read(t, plugin) != "binary v1" || read(t, ca) != string(n.caPEM) {
		t.Error("tampered files not restored")
	}

	// A new image: a new agent with a new binary installs it, even though
	// the old file's size is the same.
	write(t, n.exe, "binary v2", 0o755)
	a2, err := New(n.opts())
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := a2.Sync(); err != nil || !slices.Equal(changed, []string{plugin}) {
		t.Errorf("upgrade changed %v, %v", changed, err)
	}
	if read(t, plugin) != "binary v2" {
		t.Error("new binary not installed")
	}
	// The same binary with the wrong mode is fixed too.
	if err := os.Chmod(plugin, 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := a2.Sync(); err != nil || !slices.Equal(changed, []string{plugin}) || mode(t, plugin) != 0o755 {
		t.Errorf("mode fix changed %v, %v", changed, err)
	}

	// The ConfigMap loses its server name (registered by URL): empty file.
	if err := os.Remove(filepath.Join(n.source, nodecreds.ServerNameFile)); err != nil {
		t.Fatal(err)
	}
	if changed, err := a2.Sync(); err != nil || !slices.Equal(changed, []string{name}) || read(t, name) != "" {
		t.Errorf("server name removal changed %v, %v", changed, err)
	}
	noTemp(t, n.plugins)
	noTemp(t, n.config)
}

func TestSyncServiceEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"IPv4", map[string]string{"REGCRED_WEBHOOK_SERVICE_HOST": "10.96.0.12", "REGCRED_WEBHOOK_SERVICE_PORT": "443"}, "https://10.96.0.12:443\n", ""},
		{"IPv6", map[string]string{"REGCRED_WEBHOOK_SERVICE_HOST": "fd00::c", "REGCRED_WEBHOOK_SERVICE_PORT": "9443"}, "https://[fd00::c]:9443\n", ""},
		{"missing", map[string]string{"REGCRED_WEBHOOK_SERVICE_HOST": "10.96.0.12"}, "", "REGCRED_WEBHOOK_SERVICE_HOST and REGCRED_WEBHOOK_SERVICE_PORT are not both set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			o := n.opts()
			o.Server, o.ServiceEnv = "", "REGCRED_WEBHOOK"
			o.Getenv = func(k string) string { return tc.env[k] }
			a, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.Sync()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				// The rest of the pass still happened.
				if read(t, filepath.Join(n.plugins, nodecreds.PluginName)) != "binary v1" {
					t.Error("plugin not installed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := read(t, filepath.Join(n.config, nodecreds.ServerFile)); got != tc.want {
				t.Errorf("server %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSyncSourceProblems(t *testing.T) {
	n := newNode(t)
	a, err := New(n.opts())
	if err != nil {
		t.Fatal(err)
	}
	srcCA := filepath.Join(n.source, nodecreds.CAFile)
	ca := filepath.Join(n.config, nodecreds.CAFile)

	// The ConfigMap is not published yet: everything else is written.
	if err := os.Remove(srcCA); err != nil {
		t.Fatal(err)
	}
	_, err = a.Sync()
	if err == nil || !strings.Contains(err.Error(), "does not exist yet: the manager publishes it in the ConfigMap regcred-node-credentials") {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error not one line: %q", err)
	}
	if _, statErr := os.Stat(filepath.Join(n.config, nodecreds.ServerFile)); statErr != nil {
		t.Errorf("server not written: %v", statErr)
	}

	// A good CA, then garbage in the source: the node keeps the good one.
	write(t, srcCA, string(n.caPEM), 0o644)
	if _, err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	write(t, srcCA, "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n", 0o644)
	if _, err := a.Sync(); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate; keeping the CA the node has") {
		t.Fatalf("error %v", err)
	}
	if read(t, ca) != string(n.caPEM) {
		t.Error("good CA replaced by garbage")
	}

	// A server name that is not a DNS name.
	write(t, filepath.Join(n.source, nodecreds.ServerNameFile), "https://x", 0o644)
	if _, err := a.Sync(); err == nil || !strings.Contains(err.Error(), "not a DNS name") {
		t.Fatalf("error %v", err)
	}
}

func TestValidate(t *testing.T) {
	n := newNode(t)
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no plugin dir", func(o *Options) { o.PluginDir = "" }, "--plugin-dir is required"},
		{"no server", func(o *Options) { o.Server = "" }, "exactly one of --server or --service-env"},
		{"both", func(o *Options) { o.ServiceEnv = "REGCRED_WEBHOOK" }, "exactly one of --server or --service-env"},
		{"http server", func(o *Options) { o.Server = "http://10.0.0.1" }, `"http://10.0.0.1" is not an https://HOST[:PORT] URL`},
		{"server with path", func(o *Options) { o.Server = "https://10.0.0.1/node-credentials" }, "is not an https://HOST[:PORT] URL"},
		{"negative interval", func(o *Options) { o.Interval = -time.Second }, "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := n.opts()
			tc.edit(&o)
			if _, err := New(o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// A plugin dir that is not mounted fails the pass, with the fix.
	o := n.opts()
	o.PluginDir = filepath.Join(n.plugins, "missing")
	o.Once = true
	if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "is not a directory: mount the kubelet's --image-credential-provider-bin-dir there") {
		t.Fatalf("error %v", err)
	}
}

// TestRunLoop: the agent keeps the files current until its context ends,
// and logs a failed pass instead of exiting.
func TestRunLoop(t *testing.T) {
	n := newNode(t)
	srcCA := filepath.Join(n.source, nodecreds.CAFile)
	if err := os.Remove(srcCA); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logs []string
	o := n.opts()
	o.Interval = 10 * time.Millisecond
	o.Logf = func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, format)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()

	ca := filepath.Join(n.config, nodecreds.CAFile)
	testenv.Eventually(t, 10*time.Second, testenv.Condition("a failed pass logged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(logs) > 0
	}))
	// The ConfigMap arrives: a later pass writes the CA.
	write(t, srcCA, string(n.caPEM), 0o644)
	testenv.Eventually(t, 10*time.Second, testenv.Condition("the CA written", func() bool {
		b, _ := os.ReadFile(ca)
		return string(b) == string(n.caPEM)
	}))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after its context ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
