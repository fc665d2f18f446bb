// Package credhelpers reads docker configs as docker does, running their
// credential helpers (credsStore, credHelpers). It is apart from dockercfg,
// which reads configs as the kubelet does and runs nothing.
package credhelpers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	dockerconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/sirupsen/logrus"

	"regcred.dev/regcred/internal/dockercfg"
)

// HelperError is a credential helper's failure (docker-credential-*),
// not the file's. It never carries what the helper printed: a helper
// that fails may print what it holds.
type HelperError struct {
	Path string
	// Registry is the registry asked for; "" for the whole store.
	Registry string
	Err      error
}

func (e *HelperError) Error() string {
	what := "the registries it stores"
	if e.Registry != "" {
		what = e.Registry
	}
	return fmt.Sprintf("%s: its credential helper failed for %s (run the docker-credential-* program by hand to see why)", e.Path, what)
}

func (e *HelperError) Unwrap() error { return e.Err }

// ReadFileForRegistry reads a docker config for pushing to registry (a
// host[:port]): a config.json with "credsStore" or "credHelpers" is
// resolved as docker resolves it, running only the helper for that
// registry (docker-credential-NAME on PATH), so a `docker login` into a
// desktop keychain or a cloud helper works; without helpers it is
// ReadFile. No credentials for registry is an empty config (anonymous).
func ReadFileForRegistry(path, registry string) (*dockercfg.Config, error) {
	if filepath.Base(path) == ".dockercfg" {
		return dockercfg.ReadFile(path)
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
		return dockercfg.ReadFile(path)
	}
	cf, _, err := loadDockerCLI(path)
	if err != nil {
		return nil, err
	}
	a, err := cf.GetAuthConfig(registry)
	if err != nil {
		return nil, &HelperError{Path: path, Registry: registry, Err: err}
	}
	cfg := &dockercfg.Config{Auths: map[string]dockercfg.Entry{}}
	if a.Username != "" || a.Password != "" || a.IdentityToken != "" {
		cfg.Auths[dockercfg.ServerKey(registry)] = dockercfg.Entry{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
	}
	return cfg, nil
}

// ReadDockerCLIConfig reads a config.json with docker's own loader (the
// one go-containerregistry's keychain uses) and its credential helpers:
// every registry's credentials, or only those of registries (an error
// names one without).
func ReadDockerCLIConfig(path string, registries []string) (*dockercfg.Config, error) {
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

func resolve(path string, cf *configfile.ConfigFile, registries []string) (*dockercfg.Config, error) {
	cfg := &dockercfg.Config{Auths: map[string]dockercfg.Entry{}}
	add := func(key string, user, pass, token string) {
		if user == "" && pass == "" && token == "" {
			return
		}
		cfg.Auths[key] = dockercfg.Entry{Username: user, Password: pass, IdentityToken: token}
	}
	if len(registries) == 0 {
		// docker's loader logs a failing helper's error, output included,
		// and goes on without its registry: not on our stderr.
		logger := logrus.StandardLogger()
		out := logger.Out
		logger.SetOutput(io.Discard)
		all, err := cf.GetAllCredentials()
		logger.SetOutput(out)
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
				return nil, &HelperError{Path: path, Registry: r, Err: err}
			}
			if a.Username == "" && a.Password == "" && a.IdentityToken == "" {
				return nil, fmt.Errorf("%s has no credentials for %s", path, r)
			}
			add(dockercfg.ServerKey(r), a.Username, a.Password, a.IdentityToken)
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
