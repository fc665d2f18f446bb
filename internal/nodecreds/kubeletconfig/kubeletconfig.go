// Package kubeletconfig renders the kubelet's CredentialProviderConfig
// (kubelet.config.k8s.io/v1) that makes the kubelet ask regcred's plugin,
// with the Pod's ServiceAccount token, for the images regcred serves, and
// the kubelet flags that load it.
//
// The kubelet refuses to start on an invalid config file, and a
// matchImages entry it accepts but never matches fails silently at every
// pull, so everything rendered here is first checked with the kubelet's
// own rules (pkg/credentialprovider/plugin validateCredentialProviderConfig
// of v1.37), plus the mistakes that parse but never match.
package kubeletconfig

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"sigs.k8s.io/yaml"

	"regcred.dev/regcred/internal/nodecreds"
)

const (
	// DefaultBinDir is the kubelet's --image-credential-provider-bin-dir
	// regcred suggests: under /var/lib, writable on image-based node
	// systems (Flatcar, Bottlerocket) where /usr is not.
	DefaultBinDir = "/var/lib/regcred/bin"
	// DefaultConfigFile is the --image-credential-provider-config path
	// regcred suggests.
	DefaultConfigFile = "/etc/kubernetes/image-credential-provider-config.yaml"
	// DefaultCacheDuration is the provider's defaultCacheDuration; the
	// broker's answers carry their own, this applies only without one.
	DefaultCacheDuration = time.Minute
)

// Options are what `regcred kubelet-config` takes.
type Options struct {
	// MatchImages are the images the kubelet asks regcred for (required):
	// host globs with an optional port and path, as in matchImages.
	MatchImages []string
	// Audience is the token audience (default nodecreds.DefaultAudience);
	// it must be the manager's --node-credentials-audience.
	Audience string
	// CacheDuration is defaultCacheDuration (default DefaultCacheDuration).
	CacheDuration time.Duration
	// ConfigDir is the plugin's configuration directory on the node
	// (default nodecreds.DefaultConfigDir, which needs no argument).
	ConfigDir string
	// BinDir and ConfigFile only appear in Flags.
	BinDir     string
	ConfigFile string
}

func (o Options) withDefaults() Options {
	if o.Audience == "" {
		o.Audience = nodecreds.DefaultAudience
	}
	if o.CacheDuration == 0 {
		o.CacheDuration = DefaultCacheDuration
	}
	if o.ConfigDir == "" {
		o.ConfigDir = nodecreds.DefaultConfigDir
	}
	if o.BinDir == "" {
		o.BinDir = DefaultBinDir
	}
	if o.ConfigFile == "" {
		o.ConfigFile = DefaultConfigFile
	}
	return o
}

// Config builds the CredentialProviderConfig with regcred's provider.
func Config(o Options) (*kubeletconfigv1.CredentialProviderConfig, error) {
	o = o.withDefaults()
	if len(o.MatchImages) == 0 {
		return nil, errors.New("give at least one image pattern to match (for example registry.example.com or *.registry.example.com:5000/team)")
	}
	var images []string
	seen := map[string]bool{}
	for _, m := range o.MatchImages {
		m = strings.TrimSpace(m)
		if err := ValidateMatchImage(m); err != nil {
			return nil, err
		}
		if !seen[m] {
			seen[m] = true
			images = append(images, m)
		}
	}
	if o.Audience != strings.TrimSpace(o.Audience) || strings.ContainsAny(o.Audience, " \t\r\n") {
		return nil, fmt.Errorf("audience %q must not contain spaces", o.Audience)
	}
	if o.CacheDuration < 0 {
		return nil, fmt.Errorf("cache duration %s must not be negative", o.CacheDuration)
	}
	if !filepath.IsAbs(o.ConfigDir) {
		return nil, fmt.Errorf("config dir %q must be an absolute path: the kubelet runs the plugin from its own working directory", o.ConfigDir)
	}
	args := []string{nodecreds.PluginCommand}
	if filepath.Clean(o.ConfigDir) != nodecreds.DefaultConfigDir {
		args = append(args, "--config-dir", filepath.Clean(o.ConfigDir))
	}
	requireSA := true
	cfg := &kubeletconfigv1.CredentialProviderConfig{
		TypeMeta: metav1.TypeMeta{APIVersion: kubeletconfigv1.SchemeGroupVersion.String(), Kind: "CredentialProviderConfig"},
		Providers: []kubeletconfigv1.CredentialProvider{{
			Name:                 nodecreds.PluginName,
			MatchImages:          images,
			DefaultCacheDuration: &metav1.Duration{Duration: o.CacheDuration},
			APIVersion:           credentialproviderv1.SchemeGroupVersion.String(),
			Args:                 args,
			TokenAttributes: &kubeletconfigv1.ServiceAccountTokenAttributes{
				ServiceAccountTokenAudience: o.Audience,
				// The broker's answer depends only on the ServiceAccount
				// (the credentials that select it), never on the Pod, and
				// it never returns the token itself.
				CacheType:             kubeletconfigv1.ServiceAccountServiceAccountTokenCacheType,
				RequireServiceAccount: &requireSA,
			},
		}},
	}
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Render is the config file's YAML.
func Render(o Options) ([]byte, error) {
	cfg, err := Config(o)
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(cfg)
}

// Flags are the kubelet flags that load the config file and find the
// plugin, on one line.
func Flags(o Options) string {
	o = o.withDefaults()
	return fmt.Sprintf("--image-credential-provider-config=%s --image-credential-provider-bin-dir=%s", o.ConfigFile, o.BinDir)
}

// Validate checks cfg with the kubelet's rules, so that a file regcred
// renders never stops a kubelet from starting. The first problem is
// returned, as one line.
func Validate(cfg *kubeletconfigv1.CredentialProviderConfig) error {
	if cfg.APIVersion != kubeletconfigv1.SchemeGroupVersion.String() || cfg.Kind != "CredentialProviderConfig" {
		return fmt.Errorf("config is %s %s, want %s CredentialProviderConfig", cfg.APIVersion, cfg.Kind, kubeletconfigv1.SchemeGroupVersion)
	}
	if len(cfg.Providers) == 0 {
		return errors.New("providers: at least one provider is required")
	}
	names := map[string]bool{}
	for i, p := range cfg.Providers {
		at := fmt.Sprintf("providers[%d]", i)
		switch {
		case p.Name == "":
			return fmt.Errorf("%s.name is required", at)
		case strings.ContainsAny(p.Name, "/ ") || p.Name == "." || p.Name == "..":
			return fmt.Errorf("%s.name %q must be a file name: no '/', no spaces, not . or ..", at, p.Name)
		case names[p.Name]:
			return fmt.Errorf("%s.name %q appears twice", at, p.Name)
		}
		names[p.Name] = true
		if p.APIVersion != credentialproviderv1.SchemeGroupVersion.String() {
			// v1alpha1 and v1beta1 are accepted by the kubelet too, but
			// tokenAttributes (and so regcred) need v1.
			return fmt.Errorf("%s.apiVersion %q: use %s", at, p.APIVersion, credentialproviderv1.SchemeGroupVersion)
		}
		if len(p.MatchImages) == 0 {
			return fmt.Errorf("%s.matchImages: at least one image pattern is required", at)
		}
		for _, m := range p.MatchImages {
			if err := ValidateMatchImage(m); err != nil {
				return fmt.Errorf("%s.matchImages: %w", at, err)
			}
		}
		if p.DefaultCacheDuration == nil {
			return fmt.Errorf("%s.defaultCacheDuration is required", at)
		}
		if p.DefaultCacheDuration.Duration < 0 {
			return fmt.Errorf("%s.defaultCacheDuration must not be negative", at)
		}
		if ta := p.TokenAttributes; ta != nil {
			switch {
			case ta.ServiceAccountTokenAudience == "":
				return fmt.Errorf("%s.tokenAttributes.serviceAccountTokenAudience is required", at)
			case ta.RequireServiceAccount == nil:
				return fmt.Errorf("%s.tokenAttributes.requireServiceAccount is required", at)
			case ta.CacheType != kubeletconfigv1.TokenServiceAccountTokenCacheType && ta.CacheType != kubeletconfigv1.ServiceAccountServiceAccountTokenCacheType:
				return fmt.Errorf("%s.tokenAttributes.cacheType %q: use Token or ServiceAccount", at, ta.CacheType)
			case !*ta.RequireServiceAccount && len(ta.RequiredServiceAccountAnnotationKeys) > 0:
				return fmt.Errorf("%s.tokenAttributes: requiredServiceAccountAnnotationKeys need requireServiceAccount: true", at)
			}
		}
	}
	return nil
}

// ValidateMatchImage checks one matchImages entry: the kubelet's own parse
// (credentialprovider.ParseSchemelessURL: "https://" + entry must be a
// URL), then what parses but never matches: a scheme, a glob outside the
// host (globs work per host label only), a malformed glob, an empty label.
func ValidateMatchImage(m string) error {
	if m == "" {
		return errors.New("an image pattern is empty")
	}
	if strings.ContainsAny(m, " \t\r\n") {
		return fmt.Errorf("image pattern %q contains spaces", m)
	}
	if strings.Contains(m, "://") {
		return fmt.Errorf("image pattern %q has a scheme: write host[:port][/path], the kubelet never strips it", m)
	}
	if strings.Contains(m, "?") {
		// The kubelet parses the entry as a URL: "?" starts its query,
		// so the host stops there and never matches as meant.
		return fmt.Errorf("image pattern %q uses '?': the kubelet reads it as a URL query; use '*' globs", m)
	}
	u, err := url.Parse("https://" + m)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("image pattern %q is not host[:port][/path]: %v", m, err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("image pattern %q is not host[:port][/path]", m)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, ""
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("image pattern %q has port %q: a port is a number, globs work only in the host", m, port)
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" {
			return fmt.Errorf("image pattern %q has an empty host label", m)
		}
		if _, err := filepath.Match(label, ""); err != nil {
			return fmt.Errorf("image pattern %q has a malformed glob in %q", m, label)
		}
	}
	if strings.ContainsAny(u.Path, "*?[") {
		return fmt.Errorf("image pattern %q has a glob in its path: globs work only in the host (the path is a prefix)", m)
	}
	return nil
}
