package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// TestNoCommandPrintsThePassword runs every command, as a real process, with
// a known password in play, and looks for it in everything the process
// writes: stdout, stderr and any log line.
func TestNoCommandPrintsThePassword(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	cp := suite.ControlPlane(t)
	reg := suite.Registry(t, testregistry.Token)
	ctx := context.Background()
	if _, err := reg.PushRandomImage(ctx, "leak/app:v1"); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "regcred")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/regcred").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	const canary = "Canary-Pa55word-7f3a9"
	user := reg.User.Name
	forbidden := []string{
		canary,
		reg.User.Password,
		base64.StdEncoding.EncodeToString([]byte(user + ":" + canary)),
		base64.StdEncoding.EncodeToString([]byte(user + ":" + reg.User.Password)),
		base64.StdEncoding.EncodeToString([]byte(canary)),
	}

	ns, err := cp.CreateNamespace(ctx, "leak", nil)
	if err != nil {
		t.Fatal(err)
	}
	good := testenv.DockerConfigJSON(t, reg.Host, user, reg.User.Password)
	bad := testenv.DockerConfigJSON(t, reg.Host, user, canary)
	for name, data := range map[string][]byte{"good": good, "bad": bad} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
		if err := cp.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "good"}}
	rc.Spec.Registries = []string{reg.Host}
	rc.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "good"}
	if err := cp.Client.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}, Spec: corev1.PodSpec{
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "bad"}, {Name: "good"}},
		Containers:       []corev1.Container{{Name: "c", Image: reg.Ref("leak/app:v1")}},
	}}
	if err := cp.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	cfgFile := writeFile(t, dir, "config.json", string(bad))
	goodCfgFile := writeFile(t, dir, "good.json", string(good))
	pwFile := writeFile(t, dir, "pw", canary)
	realPwFile := writeFile(t, dir, "real-pw", reg.User.Password)
	kc := []string{"--kubeconfig", cp.Kubeconfig}
	image := reg.Ref("leak/app:v1")
	manifest := writeFile(t, dir, "deploy.yaml", strings.Replace(deployment, "nginx", image, 1))
	credsFile := writeFile(t, dir, "creds.yaml", `apiVersion: regcred.dev/v1alpha1
kind: RegistryCredential
metadata: {name: good, namespace: `+ns+`}
spec:
  registries: [`+reg.Host+`]
  source: {secretRef: {name: good}}
`)

	commands := [][]string{
		{"--help"},
		{"version"},
		{"secret", "create", "s", "--server", reg.Host, "--username", user, "--password-file", pwFile},
		{"secret", "create", "s", "--server", reg.Host, "--username", user, "--password-stdin", "-o", "json"},
		append([]string{"secret", "create", "applied", "--server", reg.Host, "--username", user, "--password-file", pwFile, "--apply", "-n", ns}, kc...),
		{"secret", "create", "s", "--server", reg.Host, "--username", "bad:user", "--password-file", pwFile},
		{"secret", "create", "s", "--from-docker-config", cfgFile, "--registry", "nothing.example.com"},
		{"resolve", image, "--docker-config", cfgFile},
		{"resolve", image, "--docker-config", cfgFile, "-o", "yaml"},
		append([]string{"resolve", image, "--pod", ns + "/p", "-o", "json"}, kc...),
		append([]string{"resolve", image, "--secret", ns + "/bad", "--secret", ns + "/good"}, kc...),
		append([]string{"check", image, "--pod", ns + "/p", "--ca-file", reg.CAFile}, kc...),
		append([]string{"check", image, "--pod", ns + "/p", "--ca-file", reg.CAFile, "-o", "json"}, kc...),
		append([]string{"check", image, "--secret", ns + "/bad", "--ca-file", reg.CAFile, "-o", "yaml"}, kc...),
		append([]string{"check", image, "--secret", ns + "/good"}, kc...), // TLS failure path
		{"check", image, "--docker-config", cfgFile, "--ca-file", reg.CAFile},
		// mirror: rejected source credentials, a rejected destination
		// password, and a copy that works with the real one.
		{"mirror", image, "--to", reg.Host + "/copies", "--docker-config", cfgFile, "--ca-file", reg.CAFile},
		append([]string{"mirror", image, "--to", reg.Host + "/copies", "--secret", ns + "/good", "--to-username", user, "--to-password-file", pwFile, "--ca-file", reg.CAFile}, kc...),
		append([]string{"mirror", image, "--to", reg.Host + "/copies", "--secret", ns + "/good", "--to-username", user, "--to-password-stdin", "--ca-file", reg.CAFile}, kc...),
		{"mirror", image, "--to", reg.Host + "/copies", "--docker-config", goodCfgFile, "--to-username", user, "--to-password-file", realPwFile, "--ca-file", reg.CAFile},
		{"mirror", "-f", manifest, "--to", reg.Host + "/copies", "--docker-config", goodCfgFile, "--ca-file", reg.CAFile},
		// manifests: credentials from the cluster, from files and by name.
		append([]string{"manifests", "inject", manifest, "--from-cluster"}, kc...),
		{"manifests", "inject", manifest, "--credentials", credsFile},
		{"manifests", "inject", manifest, "--secret", "good=" + reg.Host, "--mirror", reg.Host + "=mirror.example.com/copies"},
		{"manifests", "rewrite", manifest, "--mirror", reg.Host + "=mirror.example.com/copies"},
		{"manifests", "images", manifest},
	}
	// The paths where credentials are used and work, not only refused.
	mustSucceed := map[string]bool{}
	for _, args := range [][]string{
		{"mirror", image, "--to", reg.Host + "/copies", "--docker-config", goodCfgFile, "--to-username", user, "--to-password-file", realPwFile, "--ca-file", reg.CAFile},
		{"manifests", "inject", manifest, "--credentials", credsFile},
		append([]string{"manifests", "inject", manifest, "--from-cluster"}, kc...),
	} {
		mustSucceed[strings.Join(args, " ")] = true
	}
	for _, args := range commands {
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(canary + "\n")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run() // failing commands are part of the test
		if mustSucceed[strings.Join(args, " ")] && err != nil {
			t.Errorf("regcred %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		for _, f := range forbidden {
			if strings.Contains(out.String(), f) {
				t.Errorf("regcred %s printed a secret (%d bytes of output)", strings.Join(args, " "), out.Len())
			}
		}
		if out.Len() == 0 {
			t.Errorf("regcred %s printed nothing", strings.Join(args, " "))
		}
	}
}
