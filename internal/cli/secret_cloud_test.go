package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"regcred.dev/regcred/internal/testenv/fakecloud"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// TestSecretCreateFromECR gets a one-off Secret with the caller's AWS
// identity from the environment, against a fake ECR found through the
// SDK's own endpoint variable, and keys it by the registry ECR names.
func TestSecretCreateFromECR(t *testing.T) {
	reg, err := testregistry.Start(testregistry.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	a, err := fakecloud.StartAWS(reg, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	id, secret := a.NewAccessKey()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, a.CA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", id)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_ENDPOINT_URL_ECR", a.URL)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))

	stdout, stderr, code := run(t, "", "secret", "create", "ecr", "--from-ecr", "eu-west-1", "--cloud-ca-file", ca, "-n", "team-a")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	cfg := decodeManifest(t, stdout)
	e, ok := cfg.Auths[a.RegistryHost()]
	if !ok || e.Username != "AWS" || e.Password == "" {
		t.Fatalf("entries %v, want an AWS login for %s", cfg.Keys(), a.RegistryHost())
	}
	if !strings.Contains(stderr, "the token expires at") {
		t.Errorf("stderr %q does not say when the token expires", stderr)
	}
	if strings.Contains(stderr, e.Password) || strings.Contains(stderr, secret) {
		t.Error("stderr shows a secret")
	}

	// A refused identity is a clear error, without the keys.
	a.RevokeAccessKey(id)
	_, stderr, code = run(t, "", "secret", "create", "ecr", "--from-ecr", "eu-west-1", "--cloud-ca-file", ca, "--registry", reg.Host)
	if code == 0 || !strings.Contains(stderr, "UnrecognizedClientException") || strings.Contains(stderr, secret) {
		t.Errorf("revoked key: exit %d, stderr %q; want a failure naming AWS's answer and no secret", code, stderr)
	}
}

// TestCheckWithECRToken: check tries a fresh ECR token, keyed by the
// image's registry, against the registry like a pull.
func TestCheckWithECRToken(t *testing.T) {
	reg, err := testregistry.Start(testregistry.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if _, err := reg.PushRandomImage(context.Background(), "team/app:v1"); err != nil {
		t.Fatal(err)
	}
	a, err := fakecloud.StartAWS(reg, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	id, secret := a.NewAccessKey()
	dir := t.TempDir()
	awsCA, regCA := filepath.Join(dir, "aws.pem"), filepath.Join(dir, "reg.pem")
	for path, pem := range map[string][]byte{awsCA: a.CA.CertPEM, regCA: reg.CA.CertPEM} {
		if err := os.WriteFile(path, pem, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("AWS_ACCESS_KEY_ID", id)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_ENDPOINT_URL_ECR", a.URL)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))

	stdout, stderr, code := run(t, "", "check", reg.Ref("team/app:v1"), "--from-ecr", "eu-west-1", "--cloud-ca-file", awsCA, "--ca-file", regCA)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "ECR eu-west-1 token (expires") || !strings.Contains(stdout, "Pull would succeed with attempt #1") {
		t.Errorf("output does not show the ECR token working:\n%s", stdout)
	}
	if strings.Contains(stdout+stderr, secret) {
		t.Error("output shows the secret key")
	}
}
