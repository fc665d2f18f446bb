package cloud

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"

	"regcred.dev/regcred/internal/keyring"
)

// Plugin defaults.
const (
	DefaultPluginCacheDuration = 10 * time.Minute
	DefaultPluginTimeout       = 30 * time.Second
	// maxPluginOutput bounds what a plugin may print on stdout and on
	// stderr: an answer is a few hundred bytes; past this the plugin is
	// killed.
	maxPluginOutput = 64 << 10
)

// Plugin runs a kubelet image credential provider plugin (the exec API of
// k8s.io/kubelet/pkg/apis/credentialprovider/v1) once per registry, or
// once for all when it answers with cacheKeyType Global.
type Plugin struct {
	Command string
	Args    []string
	// Env ("NAME=value") is the plugin's environment, besides PATH: unlike
	// the kubelet, regcred passes none of its own (its cloud identity,
	// proxy settings, whatever the chart's extraEnv adds). Names that
	// change what code the plugin loads (LD_*, PATH, ...) are refused.
	Env []string
	// Dir is the only directory plugins run from (--credential-provider-dir).
	// Command runs only if the file it resolves to, through every symlink,
	// is inside Dir (resolved likewise); the resolved path is what runs.
	// Empty: no plugin runs.
	Dir string
	// Registries are asked for, each as the image of a request.
	Registries           []string
	DefaultCacheDuration time.Duration
	Timeout              time.Duration
	Run                  Env
}

var _ Fetcher = (*Plugin)(nil)

// Key implements Fetcher: one plugin configuration asked for one set of
// registries.
func (p *Plugin) Key() string {
	h := sha256.New()
	for _, part := range [][]string{{p.Command}, p.Args, p.Env, {sortedJoin(p.Registries), p.DefaultCacheDuration.String()}} {
		for _, s := range part {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	return "plugin|" + hex.EncodeToString(h.Sum(nil))
}

// Kind implements Fetcher.
func (p *Plugin) Kind() string { return KindCredentialProvider }

// Fetch implements Fetcher.
func (p *Plugin) Fetch(ctx context.Context) (*Token, error) {
	if len(p.Registries) == 0 {
		return nil, errorf(Invalid, "credential provider plugin: no registry to ask for")
	}
	tok := &Token{PerRegistry: map[string]Auth{}, ReceivedAt: p.Run.now()}
	regs := slices.Clone(p.Registries)
	slices.Sort(regs)
	for _, reg := range regs {
		if _, done := tok.PerRegistry[reg]; done {
			continue
		}
		if strings.Contains(reg, "*") {
			return nil, errorf(Invalid, "credential provider plugin: registry %q has a glob; a plugin is asked for concrete registries", reg)
		}
		resp, err := p.run(ctx, reg)
		if err != nil {
			return nil, err
		}
		life := p.DefaultCacheDuration
		if life <= 0 {
			life = DefaultPluginCacheDuration
		}
		if resp.CacheDuration != nil && resp.CacheDuration.Duration > 0 {
			life = resp.CacheDuration.Duration
		}
		if exp := tok.ReceivedAt.Add(life); tok.ExpiresAt.IsZero() || exp.Before(tok.ExpiresAt) {
			tok.ExpiresAt = exp
		}
		// A Global answer serves every registry the plugin names a key
		// for: it is not asked again for them.
		targets := []string{reg}
		if resp.CacheKeyType == credentialproviderv1.GlobalPluginCacheKeyType {
			targets = regs
		}
		for _, t := range targets {
			if a, ok := matchAuth(resp.Auth, t); ok {
				tok.PerRegistry[t] = a
			}
		}
		if _, ok := tok.PerRegistry[reg]; !ok {
			return nil, errorf(TokenRequestFailed, "credential provider plugin %s gave no credentials for %s", p.Command, reg)
		}
	}
	return tok, nil
}

// matchAuth picks the answer's entry that matches registry, the most
// specific key first, as the kubelet would.
func matchAuth(auth map[string]credentialproviderv1.AuthConfig, registry string) (Auth, bool) {
	keys := make([]string, 0, len(auth))
	for k := range auth {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return len(b) - len(a) })
	for _, k := range keys {
		if keyring.Match(k, registry) || keyring.Match(k, registry+"/x") {
			a := auth[k]
			return Auth{Username: a.Username, Password: a.Password}, true
		}
	}
	return Auth{}, false
}

func (p *Plugin) run(ctx context.Context, registry string) (*credentialproviderv1.CredentialProviderResponse, error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultPluginTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := json.Marshal(credentialproviderv1.CredentialProviderRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: credentialproviderv1.SchemeGroupVersion.String(), Kind: "CredentialProviderRequest"},
		Image:    registry,
	})
	if err != nil {
		return nil, errorf(TokenRequestFailed, "encode plugin request: %v", err)
	}
	path, err := p.resolve()
	if err != nil {
		return nil, err
	}
	env, err := pluginEnv(p.Env)
	if err != nil {
		return nil, err
	}
	out, err := runPlugin(ctx, path, p.Args, env, req)
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return nil, errorf(TokenRequestFailed, "credential provider plugin %s did not answer within %s", p.Command, timeout)
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, os.ErrNotExist):
		return nil, errorf(Invalid, "credential provider plugin %s: not found in the manager's file system", p.Command)
	case errors.Is(err, os.ErrPermission):
		return nil, errorf(Invalid, "credential provider plugin %s: not executable", p.Command)
	case out.overflow != "":
		return nil, errorf(TokenRequestFailed, "credential provider plugin %s printed more than %d bytes on %s and was stopped", p.Command, maxPluginOutput, out.overflow)
	case err != nil:
		// stdout and stderr may hold credentials: neither is shown.
		return nil, errorf(TokenRequestFailed, "credential provider plugin %s failed: %v (%d bytes on stderr, not shown: it may hold secrets)", p.Command, err, out.stderrLen)
	}

	return parsePluginResponse(p.Command, out.stdout)
}

// parsePluginResponse decodes a plugin's answer strictly, as the kubelet
// does; errors never quote it.
func parsePluginResponse(command string, out []byte) (*credentialproviderv1.CredentialProviderResponse, error) {
	var resp credentialproviderv1.CredentialProviderResponse
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&resp); err != nil {
		return nil, errorf(TokenRequestFailed, "credential provider plugin %s printed something that is not a CredentialProviderResponse (%d bytes, not shown)", command, len(out))
	}
	if resp.APIVersion != credentialproviderv1.SchemeGroupVersion.String() || resp.Kind != "CredentialProviderResponse" {
		return nil, errorf(TokenRequestFailed, "credential provider plugin %s answered with apiVersion %q kind %q; want %s CredentialProviderResponse",
			command, clip(resp.APIVersion), clip(resp.Kind), credentialproviderv1.SchemeGroupVersion.String())
	}
	switch resp.CacheKeyType {
	case credentialproviderv1.ImagePluginCacheKeyType, credentialproviderv1.RegistryPluginCacheKeyType, credentialproviderv1.GlobalPluginCacheKeyType:
	default:
		return nil, errorf(TokenRequestFailed, "credential provider plugin %s answered with cacheKeyType %q; want Image, Registry or Global", command, clip(string(resp.CacheKeyType)))
	}
	if resp.CacheDuration != nil && resp.CacheDuration.Duration < 0 {
		return nil, errorf(TokenRequestFailed, "credential provider plugin %s answered with a negative cacheDuration", command)
	}
	return &resp, nil
}

// clip bounds a value quoted from a plugin's answer: type names are short,
// and anything longer is not shown.
func clip(s string) string {
	if len(s) > 64 {
		return "(a long value, not shown)"
	}
	return s
}
