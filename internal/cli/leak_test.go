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

	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/testenv"
)

// TestNoCommandPrintsThePassword runs every command, as a real process, with
// a known password in play, and looks for it in everything the process
// writes: stdout, stderr and any log line.
func TestNoCommandPrintsThePassword(t *testing.T) {
	integration(t)
	cp := suite.ControlPlane(t)
	reg := suite.Registry(t, testenv.Token)
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
	good, _ := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{reg.Host: {Username: user, Password: reg.User.Password}}}).MarshalDockerConfigJSON()
	bad, _ := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{reg.Host: {Username: user, Password: canary}}}).MarshalDockerConfigJSON()
	for name, data := range map[string][]byte{"good": good, "bad": bad} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
		if err := cp.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}, Spec: corev1.PodSpec{
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "bad"}, {Name: "good"}},
		Containers:       []corev1.Container{{Name: "c", Image: reg.Ref("leak/app:v1")}},
	}}
	if err := cp.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	cfgFile := writeFile(t, dir, "config.json", string(bad))
	pwFile := writeFile(t, dir, "pw", canary)
	kc := []string{"--kubeconfig", cp.Kubeconfig}
	image := reg.Ref("leak/app:v1")

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
	}
	for _, args := range commands {
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(canary + "\n")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		_ = cmd.Run() // failing commands are part of the test
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
