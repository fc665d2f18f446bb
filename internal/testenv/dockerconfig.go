package testenv

import (
	"testing"

	"regcred.dev/regcred/internal/dockercfg"
)

// DockerConfigJSON is a .dockerconfigjson holding one registry user's
// credential for host.
func DockerConfigJSON(t testing.TB, host, user, password string) []byte {
	t.Helper()
	b, err := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{host: {Username: user, Password: password}}}).MarshalDockerConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
