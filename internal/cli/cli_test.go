package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv/controlplane"
	"regcred.dev/regcred/internal/testenv/testsuite"
)

var suite = testsuite.New(controlplane.WithSchemeAdder(v1alpha1.AddToScheme))

func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }

// run executes regcred in-process and returns its output and exit code.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Execute(args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBadInput: every malformed input gives one clear line and exit 2,
// never a stack trace.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	malformed := writeFile(t, dir, "malformed.json", `{"auths": {"r.io": {"auth": "dTpw"`)
	badB64 := writeFile(t, dir, "badb64.json", `{"auths": {"r.io": {"auth": "%%%"}}}`)
	empty := writeFile(t, dir, "empty.json", `{"auths": {}}`)
	good := writeFile(t, dir, "good.json", `{"auths": {"r.io": {"auth": "dTpw"}}}`)
	pw := writeFile(t, dir, "pw", "secret\n")

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"resolve malformed JSON", []string{"resolve", "r.io/app", "--docker-config", malformed}, "truncated or empty JSON"},
		{"resolve bad base64", []string{"resolve", "r.io/app", "--docker-config", badB64}, `entry "r.io": field "auth": not valid base64`},
		{"resolve invalid image", []string{"resolve", "r.io/App:x", "--docker-config", good}, "invalid image reference"},
		{"resolve no source", []string{"resolve", "r.io/app"}, "give at least one of"},
		{"resolve no image and no pod", []string{"resolve", "--docker-config", good}, "takes IMAGE, or --pod alone"},
		{"resolve two images", []string{"resolve", "r.io/a", "r.io/b", "--docker-config", good}, "takes one IMAGE (got 2 arguments)"},
		{"resolve bad secret ref", []string{"resolve", "r.io/app", "--secret", "nonamespace"}, `"nonamespace" is not NAMESPACE/NAME`},
		{"resolve missing file", []string{"resolve", "r.io/app", "--docker-config", filepath.Join(dir, "nope")}, "no such file"},
		{"resolve bad output", []string{"resolve", "r.io/app", "--docker-config", good, "-o", "xml"}, `unknown output format "xml"`},
		{"check invalid image", []string{"check", "a b", "--docker-config", good}, "invalid image reference"},
		{"check bad timeout", []string{"check", "r.io/app", "--docker-config", good, "--timeout", "0s"}, "--timeout must be positive"},
		{"check bad CA file", []string{"check", "r.io/app", "--docker-config", good, "--ca-file", pw}, "holds no PEM certificate"},
		{"unknown flag", []string{"resolve", "--nope"}, "unknown flag: --nope"},
		{"secret two clouds", []string{"secret", "create", "x", "--from-ecr", "eu-west-1", "--from-gcp"}, "exactly one of --from-ecr, --from-ecr-public, --from-gcp or --from-acr"},
		{"secret cloud and password", []string{"secret", "create", "x", "--from-gcp", "--username", "u"}, "cannot be combined"},
		{"secret tenant without acr", []string{"secret", "create", "x", "--from-ecr", "eu-west-1", "--tenant-id", "t"}, "--tenant-id and --client-id only apply with --from-acr"},
		{"secret stray cloud flag", []string{"secret", "create", "x", "--server", "r.io", "--username", "u", "--password-file", pw, "--cloud-ca-file", pw}, "only apply with --from-ecr"},
		{"secret without server", []string{"secret", "create", "x", "--username", "u", "--password-file", pw}, "--server is required"},
		{"secret with both password sources", []string{"secret", "create", "x", "--server", "r.io", "--username", "u", "--password-file", pw, "--password-stdin"}, "exactly one of --password-stdin or --password-file"},
		{"secret bad name", []string{"secret", "create", "Bad_Name", "--server", "r.io", "--username", "u", "--password-file", pw}, "invalid Secret name"},
		{"secret colon in user", []string{"secret", "create", "x", "--server", "r.io", "--username", "a:b", "--password-file", pw}, "must not contain a colon"},
		{"secret from empty config", []string{"secret", "create", "x", "--from-docker-config", empty}, "holds no credentials"},
		{"secret from malformed config", []string{"secret", "create", "x", "--from-docker-config", malformed}, "is not valid JSON"},
		{"secret registry without config", []string{"secret", "create", "x", "--registry", "r.io"}, "--registry only applies with --from-docker-config"},
		{"manager bad pod injection", []string{"manager", "--pod-injection", "both"}, `--pod-injection "both": use webhook or policy`},
		{"doctor bad kind", []string{"doctor", "svc/web"}, `cannot diagnose "svc"`},
		{"doctor not kind/name", []string{"doctor", "web"}, `"web" is not KIND/NAME`},
		{"doctor two targets", []string{"doctor", "pod/a", "pod/b"}, "takes at most one KIND/NAME (got 2 arguments)"},
		{"doctor bad output", []string{"doctor", "-o", "xml"}, `unknown output format "xml"`},
		{"manager lease shorter than its renewal", []string{"manager", "--leader-election-renew-deadline", "20s"}, "must be shorter than the lease duration"},
		{"manager zero retry period", []string{"manager", "--leader-election-retry-period", "0s"}, "must be positive"},
		{"doctor bad timeout", []string{"doctor", "--check", "--timeout", "0s"}, "--timeout must be positive"},
		{"doctor bad CA file", []string{"doctor", "--check", "--ca-file", pw}, "holds no PEM certificate"},
		{"secret bad server key", []string{"secret", "create", "x", "--server", "exa mple.com:port", "--username", "u", "--password-file", pw}, "--server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, "", tc.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, exitUsage, stdout, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.want)
			}
			if lines := strings.Count(strings.TrimRight(stderr, "\n"), "\n"); lines != 0 {
				t.Errorf("error is %d lines, want one:\n%s", lines+1, stderr)
			}
			if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
				t.Errorf("stack trace on bad input:\n%s", stderr)
			}
		})
	}
}

func TestPasswordStdinTrimsOneNewline(t *testing.T) {
	out, stderr, code := run(t, "s3cret\n", "secret", "create", "x", "--server", "r.io", "--username", "u", "--password-stdin", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	cfg := decodeManifest(t, out)
	if e := cfg.Auths["r.io"]; e.Username != "u" || e.Password != "s3cret" {
		t.Errorf("entry = %v (password %q)", e, e.Password)
	}
}

func TestDockerHubServerKey(t *testing.T) {
	out, stderr, code := run(t, "p", "secret", "create", "hub", "--server", "docker.io", "--username", "u", "--password-stdin")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	cfg := decodeManifest(t, out)
	if _, ok := cfg.Auths["https://index.docker.io/v1/"]; !ok {
		t.Errorf("keys %v, want Docker's own key for Docker Hub", cfg.Keys())
	}
}

func TestResolveFromDockerConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "config.json", `{"auths": {
		"https://index.docker.io/v1/": {"auth": "aHViOnA="},
		"registry.example.com": {"username": "host", "password": "p"},
		"registry.example.com/team": {"username": "team", "password": "p"},
		"*.example.com": {"username": "glob", "password": "p"}}}`)
	for _, tc := range []struct {
		image string
		want  string
	}{
		{"nginx", `{"image":"docker.io/library/nginx:latest","candidates":[{"key":"https://index.docker.io/v1/","username":"hub","source":"` + cfg + `"}]}`},
		{"registry.example.com/team/app:v1", `{"image":"registry.example.com/team/app:v1","candidates":[` +
			`{"key":"registry.example.com/team","username":"team","source":"` + cfg + `"},` +
			`{"key":"registry.example.com","username":"host","source":"` + cfg + `"},` +
			`{"key":"*.example.com","username":"glob","source":"` + cfg + `"}]}`},
		{"quay.io/x/y", `{"image":"quay.io/x/y:latest","candidates":[]}`},
	} {
		out, stderr, code := run(t, "", "resolve", tc.image, "--docker-config", cfg, "-o", "json")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.image, code, stderr)
		}
		if got := compactJSON(t, out); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.image, got, tc.want)
		}
	}
	out, _, _ := run(t, "", "resolve", "quay.io/x/y", "--docker-config", cfg)
	if !strings.Contains(out, "pulls anonymously") {
		t.Errorf("table output for no match: %s", out)
	}
}
