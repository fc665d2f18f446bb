package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"sigs.k8s.io/yaml"

	"regcred.dev/regcred/internal/dockercfg"
)

// decodeManifest parses a Secret manifest printed by `secret create`.
func decodeManifest(t *testing.T, out string) *dockercfg.Config {
	t.Helper()
	var m struct {
		Type string            `json:"type"`
		Data map[string][]byte `json:"data"`
	}
	if err := yaml.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("output is not a manifest: %v\n%s", err, out)
	}
	if m.Type != dockercfg.SecretTypeDockerConfigJSON {
		t.Fatalf("type %q", m.Type)
	}
	cfg, err := dockercfg.ParseDockerConfigJSON(m.Data[dockercfg.DockerConfigJSONKey])
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func compactJSON(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return b.String()
}

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "regcred-cli-test-") }
