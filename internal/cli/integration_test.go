package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

func pullSecret(ns, name, typ string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretType(typ), Data: data}
}

func dockerConfigJSON(t *testing.T, entries map[string]dockercfg.Entry) map[string][]byte {
	t.Helper()
	b, err := (&dockercfg.Config{Auths: entries}).MarshalDockerConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{corev1.DockerConfigJsonKey: b}
}

func TestSecretCreateApply(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	cp := suite.ControlPlane(t)
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, "apply", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, pw := range []string{"first-token", "rotated-token"} {
		out, stderr, code := run(t, pw+"\n", "secret", "create", "robot", "--server", "harbor.example.com",
			"--username", "robot$ci", "--password-stdin", "--apply", "-n", ns, "--kubeconfig", cp.Kubeconfig)
		if code != 0 {
			t.Fatalf("apply %d: exit %d: %s", i, code, stderr)
		}
		if !strings.Contains(out, "secret/robot applied in namespace "+ns) {
			t.Errorf("output %q", out)
		}
		var s corev1.Secret
		if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "robot"}, &s); err != nil {
			t.Fatal(err)
		}
		if s.Type != corev1.SecretTypeDockerConfigJson {
			t.Errorf("type %s", s.Type)
		}
		cfg, err := dockercfg.ParseDockerConfigJSON(s.Data[corev1.DockerConfigJsonKey])
		if err != nil {
			t.Fatal(err)
		}
		if e := cfg.Auths["harbor.example.com"]; e.Username != "robot$ci" || e.Password != pw {
			t.Errorf("apply %d stored %v", i, e)
		}
	}

	// A Secret of another type cannot be turned into a pull Secret: the
	// API server refuses, and regcred says so in one line.
	if err := cp.Client.Create(ctx, pullSecret(ns, "opaque", "Opaque", map[string][]byte{"a": []byte("b")})); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := run(t, "pw", "secret", "create", "opaque", "--server", "r.io", "--username", "u", "--password-stdin", "--apply", "-n", ns, "--kubeconfig", cp.Kubeconfig)
	if code == 0 || !strings.Contains(stderr, "immutable") {
		t.Errorf("changing the type of a Secret: exit %d, %s", code, stderr)
	}
}

// TestRenderedConfigWorksWithSkopeo: the .dockerconfigjson `secret create`
// renders is accepted unmodified by a real client as its auth file.
func TestRenderedConfigWorksWithSkopeo(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	skopeo := testenv.Tool(t, "skopeo")
	for _, mode := range []testregistry.AuthMode{testregistry.Basic, testregistry.Token} {
		t.Run(string(mode), func(t *testing.T) {
			reg := suite.Registry(t, mode)
			ctx := context.Background()
			digest, err := reg.PushRandomImage(ctx, "skopeo/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			out, stderr, code := run(t, reg.User.Password, "secret", "create", "reg", "--server", reg.Host, "--username", reg.User.Name, "--password-stdin", "-o", "json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var m struct {
				Data map[string]string `json:"data"`
			}
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatal(err)
			}
			raw, err := base64.StdEncoding.DecodeString(m.Data[corev1.DockerConfigJsonKey])
			if err != nil {
				t.Fatal(err)
			}
			authfile := writeFile(t, dir, "auth.json", string(raw))
			cmd := exec.Command(skopeo, "inspect", "--authfile", authfile, "--cert-dir", reg.CertDir, "--format", "{{.Digest}}", "docker://"+reg.Ref("skopeo/app:v1"))
			cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir)
			got, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("skopeo with the rendered auth file: %v\n%s", err, got)
			}
			if strings.TrimSpace(string(got)) != digest.String() {
				t.Errorf("skopeo saw digest %s, pushed %s", got, digest)
			}

			// And the negative control: a wrong password in the same format
			// is refused, so skopeo really used the file.
			wrong := strings.Replace(string(raw), base64.StdEncoding.EncodeToString([]byte(reg.User.Name+":"+reg.User.Password)),
				base64.StdEncoding.EncodeToString([]byte(reg.User.Name+":nope")), 1)
			wrong = strings.Replace(wrong, `"password":"`+reg.User.Password+`"`, `"password":"nope"`, 1)
			badfile := writeFile(t, dir, "bad.json", wrong)
			cmd = exec.Command(skopeo, "inspect", "--authfile", badfile, "--cert-dir", reg.CertDir, "docker://"+reg.Ref("skopeo/app:v1"))
			cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir)
			if got, err := cmd.CombinedOutput(); err == nil {
				t.Errorf("skopeo accepted a wrong password:\n%s", got)
			}
		})
	}
}

// TestSecretFromDockerConfigWithHelper resolves a credential helper
// (docker-credential-*) the way docker does.
func TestSecretFromDockerConfigWithHelper(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	reg := suite.Registry(t, testregistry.Token)
	dir := t.TempDir()
	helper := fmt.Sprintf(`#!/bin/sh
read server
case "$1" in
get) if [ "$server" = %q ]; then printf '{"ServerURL":"%%s","Username":%q,"Secret":%q}' "$server"; else echo "credentials not found in native keychain"; exit 1; fi ;;
list) printf '{%q:%q}' ;;
*) exit 1 ;;
esac
`, reg.Host, reg.User.Name, reg.User.Password, reg.Host, reg.User.Name)
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-regcredtest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	config := writeFile(t, dir, "config.json", fmt.Sprintf(`{"auths": {"other.example.com": {"auth": "b3RoZXI6cHc="}}, "credHelpers": {%q: "regcredtest"}}`, reg.Host))

	for _, args := range [][]string{
		{"secret", "create", "x", "--from-docker-config", config},
		{"secret", "create", "x", "--from-docker-config", config, "--registry", reg.Host},
	} {
		out, stderr, code := run(t, "", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		cfg := decodeManifest(t, out)
		if e := cfg.Auths[reg.Host]; e.Username != reg.User.Name || e.Password != reg.User.Password {
			t.Errorf("%v: helper credential not resolved: %v", args, cfg.Auths)
		}
		wantOther := len(args) == 5
		if _, ok := cfg.Auths["other.example.com"]; ok != wantOther {
			t.Errorf("%v: other.example.com present=%t, want %t", args, ok, wantOther)
		}
	}
	_, stderr, code := run(t, "", "secret", "create", "x", "--from-docker-config", config, "--registry", "unknown.example.com")
	if code != exitUsage || !strings.Contains(stderr, "has no credentials for unknown.example.com") {
		t.Errorf("unknown registry: exit %d, %s", code, stderr)
	}
}

func TestResolvePod(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	cp := suite.ControlPlane(t)
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, "resolve", nil)
	if err != nil {
		t.Fatal(err)
	}
	objs := []client.Object{
		pullSecret(ns, "harbor", corev1.DockerConfigJsonKey, nil),
	}
	objs = []client.Object{
		pullSecret(ns, "harbor", string(corev1.SecretTypeDockerConfigJson), dockerConfigJSON(t, map[string]dockercfg.Entry{
			"harbor.example.com":      {Username: "robot-all", Password: "p1"},
			"harbor.example.com/team": {Username: "robot-team", Password: "p2"},
		})),
		pullSecret(ns, "hub", string(corev1.SecretTypeDockerConfigJson), dockerConfigJSON(t, map[string]dockercfg.Entry{
			"https://index.docker.io/v1/": {Username: "hubuser", Password: "p3"},
			"harbor.example.com":          {Username: "second-secret", Password: "p4"},
		})),
		pullSecret(ns, "basic", string(corev1.SecretTypeBasicAuth), map[string][]byte{"username": []byte("u"), "password": []byte("p")}),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "builder"},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "harbor"}, {Name: "gone"}, {Name: "basic"}, {Name: "hub"}}},
		// The ServiceAccount admission plugin copies the ServiceAccount's
		// list into Pods that set none; the test control plane runs without
		// it, so the Pod carries the copy itself.
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}, Spec: corev1.PodSpec{
			ServiceAccountName: "builder",
			ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "harbor"}, {Name: "gone"}, {Name: "basic"}, {Name: "hub"}},
			Containers:         []corev1.Container{{Name: "app", Image: "harbor.example.com/team/app:1"}},
			Volumes: []corev1.Volume{{Name: "model", VolumeSource: corev1.VolumeSource{
				Image: &corev1.ImageVolumeSource{Reference: "harbor.example.com/models/llm:1", PullPolicy: corev1.PullIfNotPresent}}}},
		}},
	}
	for _, o := range objs {
		if err := cp.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"resolve", "harbor.example.com/team/app:1", "--pod", ns + "/app", "--kubeconfig", cp.Kubeconfig}
	out, stderr, code := run(t, "", append(args, "-o", "json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := `{"image":"harbor.example.com/team/app:1","candidates":[` +
		`{"key":"harbor.example.com/team","username":"robot-team","source":"` + ns + `/harbor"},` +
		`{"key":"harbor.example.com","username":"robot-all","source":"` + ns + `/harbor"},` +
		`{"key":"harbor.example.com","username":"second-secret","source":"` + ns + `/hub"}]}`
	if got := compactJSON(t, out); got != want {
		t.Errorf("json:\n got %s\nwant %s", got, want)
	}
	for _, w := range []string{
		"pull secret " + ns + "/gone does not exist",
		"pull secret " + ns + `/basic is of type "kubernetes.io/basic-auth"`,
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	out, _, _ = run(t, "", args...)
	if !strings.Contains(out, "copied from ServiceAccount builder") {
		t.Errorf("table does not say where the secrets came from:\n%s", out)
	}

	// Every image of the Pod, its image volume included.
	out, stderr, code = run(t, "", "resolve", "--pod", ns+"/app", "--kubeconfig", cp.Kubeconfig, "-o", "json")
	if code != 0 {
		t.Fatalf("resolve --pod without IMAGE: exit %d: %s", code, stderr)
	}
	want = `[{"image":"harbor.example.com/team/app:1","candidates":[` +
		`{"key":"harbor.example.com/team","username":"robot-team","source":"` + ns + `/harbor"},` +
		`{"key":"harbor.example.com","username":"robot-all","source":"` + ns + `/harbor"},` +
		`{"key":"harbor.example.com","username":"second-secret","source":"` + ns + `/hub"}]},` +
		`{"image":"harbor.example.com/models/llm:1","candidates":[` +
		`{"key":"harbor.example.com","username":"robot-all","source":"` + ns + `/harbor"},` +
		`{"key":"harbor.example.com","username":"second-secret","source":"` + ns + `/hub"}]}]`
	if got := compactJSON(t, out); got != want {
		t.Errorf("resolve --pod json:\n got %s\nwant %s", got, want)
	}
	out, _, _ = run(t, "", "resolve", "--pod", ns+"/app", "--kubeconfig", cp.Kubeconfig)
	if !strings.Contains(out, "Image: harbor.example.com/team/app:1") || !strings.Contains(out, "Image: harbor.example.com/models/llm:1") {
		t.Errorf("resolve --pod table lacks an image:\n%s", out)
	}

	// Docker Hub image through the same Pod.
	out, _, _ = run(t, "", "resolve", "nginx", "--pod", ns+"/app", "--kubeconfig", cp.Kubeconfig, "-o", "json")
	if !strings.Contains(out, `"username": "hubuser"`) {
		t.Errorf("Docker Hub fallback not resolved:\n%s", out)
	}

	// A malformed pull Secret: the API server accepts it, the kubelet fails
	// every pull of the Pod.
	bad := pullSecret(ns, "broken", string(corev1.SecretTypeDockerConfigJson), map[string][]byte{
		corev1.DockerConfigJsonKey: []byte(`{"auths":{"quay.io":{"auth":"not*base64"}}}`)})
	if err := cp.Client.Create(ctx, bad); err != nil {
		t.Fatalf("the API server should accept a pull secret with bad base64 in auth: %v", err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken"}, Spec: corev1.PodSpec{
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "harbor"}, {Name: "broken"}},
		Containers:       []corev1.Container{{Name: "app", Image: "harbor.example.com/team/app:1"}},
	}}
	if err := cp.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = run(t, "", "resolve", "harbor.example.com/team/app:1", "--pod", ns+"/broken", "--kubeconfig", cp.Kubeconfig)
	if code != exitFailure || !strings.Contains(stderr, "pull secret "+ns+`/broken is malformed: .dockerconfigjson: entry "quay.io": field "auth": not valid base64`) ||
		!strings.Contains(stderr, "fails every pull") {
		t.Errorf("malformed secret: exit %d, %s", code, stderr)
	}

	_, stderr, code = run(t, "", "resolve", "nginx", "--pod", ns+"/nope", "--kubeconfig", cp.Kubeconfig)
	if code != exitFailure || !strings.Contains(stderr, "not found") {
		t.Errorf("missing pod: exit %d, %s", code, stderr)
	}
}

func TestCheckAgainstRegistries(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	cp := suite.ControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, mode := range []testregistry.AuthMode{testregistry.Basic, testregistry.Token} {
		t.Run(string(mode), func(t *testing.T) {
			reg := suite.Registry(t, mode)
			if _, err := reg.PushRandomImage(ctx, "cli/app:v1"); err != nil {
				t.Fatal(err)
			}
			ns, err := cp.CreateNamespace(ctx, "check", nil)
			if err != nil {
				t.Fatal(err)
			}
			secrets := []*corev1.Secret{
				pullSecret(ns, "good", string(corev1.SecretTypeDockerConfigJson), dockerConfigJSON(t, map[string]dockercfg.Entry{reg.Host: {Username: reg.User.Name, Password: reg.User.Password}})),
				pullSecret(ns, "wrong", string(corev1.SecretTypeDockerConfigJson), dockerConfigJSON(t, map[string]dockercfg.Entry{reg.Host: {Username: reg.User.Name, Password: "wrong-pass"}})),
				pullSecret(ns, "elsewhere", string(corev1.SecretTypeDockerConfigJson), dockerConfigJSON(t, map[string]dockercfg.Entry{"other.example.com": {Username: "x", Password: "y"}})),
			}
			for _, s := range secrets {
				if err := cp.Client.Create(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			base := []string{"--kubeconfig", cp.Kubeconfig, "--ca-file", reg.CAFile, "-o", "json"}
			for _, tc := range []struct {
				name      string
				image     string
				args      []string
				code      int
				reasons   []string
				anonymous bool
			}{
				{"right credentials", reg.Ref("cli/app:v1"), []string{"--secret", ns + "/good"}, 0, []string{"OK"}, false},
				{"wrong then right", reg.Ref("cli/app:v1"), []string{"--secret", ns + "/wrong", "--secret", ns + "/good"}, 0, []string{"Unauthorized", "OK"}, false},
				{"wrong password", reg.Ref("cli/app:v1"), []string{"--secret", ns + "/wrong"}, 1, []string{"Unauthorized"}, false},
				{"missing repository", reg.Ref("cli/missing:v1"), []string{"--secret", ns + "/good"}, 1, []string{"NotFound"}, false},
				{"unmatched host goes anonymous", reg.Ref("cli/app:v1"), []string{"--secret", ns + "/elsewhere"}, 1, []string{"Unauthorized"}, true},
			} {
				t.Run(tc.name, func(t *testing.T) {
					args := append(append([]string{"check", tc.image}, tc.args...), base...)
					out, stderr, code := run(t, "", args...)
					if code != tc.code {
						t.Fatalf("exit %d, want %d\n%s\n%s", code, tc.code, out, stderr)
					}
					var got checkOutput
					if err := json.Unmarshal([]byte(out), &got); err != nil {
						t.Fatal(err)
					}
					var reasons []string
					for _, a := range got.Attempts {
						reasons = append(reasons, string(a.Reason))
						if a.Anonymous != tc.anonymous {
							t.Errorf("attempt anonymous=%t, want %t", a.Anonymous, tc.anonymous)
						}
					}
					if strings.Join(reasons, ",") != strings.Join(tc.reasons, ",") {
						t.Errorf("reasons %v, want %v", reasons, tc.reasons)
					}
					if got.PullWouldSucceed != (tc.code == 0) {
						t.Errorf("pullWouldSucceed=%t", got.PullWouldSucceed)
					}
					for _, secret := range []string{reg.User.Password, "wrong-pass"} {
						if strings.Contains(out+stderr, secret) {
							t.Errorf("output leaks a password")
						}
					}
				})
			}
			// The table names the reason and the hint.
			out, _, _ := run(t, "", "check", reg.Ref("cli/app:v1"), "--secret", ns+"/wrong", "--kubeconfig", cp.Kubeconfig, "--ca-file", reg.CAFile)
			if !strings.Contains(out, "Unauthorized (HTTP 401)") || !strings.Contains(out, "hint:") || !strings.Contains(out, "Pull would fail") {
				t.Errorf("table:\n%s", out)
			}
			// Without the CA the TLS class shows.
			out, _, code := run(t, "", "check", reg.Ref("cli/app:v1"), "--secret", ns+"/good", "--kubeconfig", cp.Kubeconfig)
			if code != 1 || !strings.Contains(out, "TLS") {
				t.Errorf("untrusted registry: exit %d\n%s", code, out)
			}
		})
	}
}
