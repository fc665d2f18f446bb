package dockercfg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	dockerconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
)

// HelperError is a credential helper's failure (docker-credential-*),
// not the file's.
type HelperError struct {
	Path string
	Err  error
}

func (e *HelperError) Error() string { return fmt.Sprintf("%s: credential helper: %v", e.Path, e.Err) }

func (e *HelperError) Unwrap() error { return e.Err }

// ReadFileWithHelpers is ReadFile for a file without credential helpers.
// A config.json with "credsStore" or "credHelpers" is resolved as docker
// resolves it, running the helpers (docker-credential-NAME on PATH), so
// `docker login` with a desktop keychain or a cloud helper works too.
func ReadFileWithHelpers(path string) (*Config, error) {
	if filepath.Base(path) == ".dockercfg" {
		return ReadFile(path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read docker config: %w", err)
	}
	var helpers struct {
		CredsStore  string            `json:"credsStore"`
		CredHelpers map[string]string `json:"credHelpers"`
	}
	if json.Unmarshal(raw, &helpers) != nil || (helpers.CredsStore == "" && len(helpers.CredHelpers) == 0) {
		// The kubelet's reading, with its errors.
		return ReadFile(path)
	}
	cf, _, err := loadDockerCLI(path)
	if err != nil {
		return nil, err
	}
	return resolve(path, cf, nil)
}

// ReadDockerCLIConfig reads a config.json with docker's own loader (the
// one go-containerregistry's keychain uses) and its credential helpers:
// every registry's credentials, or only those of registries (an error
// names one without).
func ReadDockerCLIConfig(path string, registries []string) (*Config, error) {
	cf, _, err := loadDockerCLI(path)
	if err != nil {
		return nil, err
	}
	return resolve(path, cf, registries)
}

func loadDockerCLI(path string) (*configfile.ConfigFile, []byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read docker config: %w", err)
	}
	if !json.Valid(raw) {
		return nil, nil, fmt.Errorf("%s is not valid JSON", path)
	}
	cf, err := dockerconfig.LoadFromReader(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", path, err)
	}
	return cf, raw, nil
}

func resolve(path string, cf *configfile.ConfigFile, registries []string) (*Config, error) {
	cfg := &Config{Auths: map[string]Entry{}}
	add := func(key string, user, pass, token string) {
		if user == "" && pass == "" && token == "" {
			return
		}
		cfg.Auths[key] = Entry{Username: user, Password: pass, IdentityToken: token}
	}
	if len(registries) == 0 {
		all, err := cf.GetAllCredentials()
		if err != nil {
			return nil, &HelperError{Path: path, Err: err}
		}
		keys := make([]string, 0, len(all))
		for k := range all {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			a := all[k]
			add(k, a.Username, a.Password, a.IdentityToken)
		}
	} else {
		for _, r := range registries {
			a, err := cf.GetAuthConfig(r)
			if err != nil {
				return nil, &HelperError{Path: path, Err: fmt.Errorf("credentials for %s: %w", r, err)}
			}
			if a.Username == "" && a.Password == "" && a.IdentityToken == "" {
				return nil, fmt.Errorf("%s has no credentials for %s", path, r)
			}
			add(ServerKey(r), a.Username, a.Password, a.IdentityToken)
		}
	}
	if len(cfg.Auths) == 0 {
		return nil, fmt.Errorf("%s holds no credentials", path)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}
