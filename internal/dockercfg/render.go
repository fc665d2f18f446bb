package dockercfg

import (
	"encoding/json"
	"fmt"
	"strings"
)

// renderedEntry has the field order and content `kubectl create secret
// docker-registry` writes, which Docker, containerd, CRI-O, podman and
// skopeo all read: username and password for clients that use them, auth for
// clients that only read that.
type renderedEntry struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Email         string `json:"email,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
}

// Validate checks that every entry can be rendered so that readers decode
// the same credential back.
func (c *Config) Validate() error {
	if c == nil || len(c.Auths) == 0 {
		return ErrEmpty
	}
	for _, key := range c.Keys() {
		e := c.Auths[key]
		switch {
		case strings.TrimSpace(key) == "":
			return &Error{Problem: "empty registry key"}
		case strings.Contains(e.Username, ":"):
			return &Error{Entry: key, Field: "username", Problem: "must not contain a colon (the auth field splits user:password at the first colon)"}
		case e.Username == "" && e.Password == "" && e.IdentityToken == "":
			return &Error{Entry: key, Problem: "has no username, password or identity token"}
		}
	}
	return nil
}

// MarshalDockerConfigJSON renders the canonical .dockerconfigjson form, with
// registry keys sorted so equal configs render to equal bytes.
func (c *Config) MarshalDockerConfigJSON() ([]byte, error) {
	auths, err := c.rendered()
	if err != nil {
		return nil, err
	}
	return json.Marshal(struct {
		Auths map[string]renderedEntry `json:"auths"`
	}{auths})
}

// MarshalDockercfg renders the legacy .dockercfg form.
func (c *Config) MarshalDockercfg() ([]byte, error) {
	auths, err := c.rendered()
	if err != nil {
		return nil, err
	}
	return json.Marshal(auths)
}

func (c *Config) rendered() (map[string]renderedEntry, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("render docker config: %w", err)
	}
	out := make(map[string]renderedEntry, len(c.Auths))
	for key, e := range c.Auths {
		r := renderedEntry{Username: e.Username, Password: e.Password, Email: e.Email, IdentityToken: e.IdentityToken}
		if e.Username != "" || e.Password != "" {
			r.Auth = EncodeAuth(e.Username, e.Password)
		}
		out[key] = r
	}
	return out, nil
}

// DockerHubKey is the key `docker login` writes for Docker Hub.
const DockerHubKey = "https://index.docker.io/v1/"

// ServerKey is the key Docker itself writes for a server given by a
// person: Docker Hub's names become DockerHubKey, others stay as given.
func ServerKey(server string) string {
	if server == "docker.io" || server == "index.docker.io" {
		return DockerHubKey
	}
	return server
}
