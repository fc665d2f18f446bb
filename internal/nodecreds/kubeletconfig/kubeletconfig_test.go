package kubeletconfig

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	"sigs.k8s.io/yaml"

	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/testenv"
)

func TestRenderGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"default", Options{MatchImages: []string{"registry.example.com"}}},
		{"custom", Options{
			MatchImages:   []string{"*.registry.example.com:5000/team", "ghcr.io/acme", "*.registry.example.com:5000/team", "123456789012.dkr.ecr.eu-west-1.amazonaws.com"},
			Audience:      "regcred.example.org",
			CacheDuration: 30 * time.Second,
			ConfigDir:     "/opt/regcred/node-credentials/",
		}},
		{"default config dir spelled out", Options{MatchImages: []string{"registry.example.com"}, ConfigDir: nodecreds.DefaultConfigDir + "/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, filepath.Join("testdata", strings.ReplaceAll(tc.name, " ", "-")+".yaml"), got)
			// What the kubelet reads back is what was built.
			var back kubeletconfigv1.CredentialProviderConfig
			if err := yaml.UnmarshalStrict(got, &back); err != nil {
				t.Fatal(err)
			}
			want, _ := Config(tc.opts)
			if !reflect.DeepEqual(&back, want) {
				t.Errorf("round trip differs:\n%+v\n%+v", back, *want)
			}
		})
	}
}

func TestFlagsGolden(t *testing.T) {
	got := Flags(Options{}) + "\n" + Flags(Options{BinDir: "/etc/eks/image-credential-provider", ConfigFile: "/etc/eks/regcred/config.yaml"}) + "\n"
	testenv.Golden(t, filepath.Join("testdata", "flags.txt"), []byte(got))
}

func TestValidateMatchImage(t *testing.T) {
	for _, ok := range []string{
		// The kubelet's own examples.
		"123456789.dkr.ecr.us-east-1.amazonaws.com", "*.azurecr.io", "gcr.io", "*.*.registry.io", "registry.io:8080/path",
		"k8s.*", "app*.k8s.io", "localhost:5000", "10.0.0.1:443/team/", "[::1]:5000",
	} {
		if err := ValidateMatchImage(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"registry.example.com team", "contains spaces"},
		{"https://registry.example.com", "has a scheme"},
		// The kubelet's own parse refuses these: no glob in the port, and
		// "[" opens an IPv6 literal in a URL host.
		{"registry.example.com:*", `invalid port ":*" after host`},
		{"[a-c].example.com", "is not host[:port][/path]"},
		{"registry.example.com:99999", `has port "99999"`},
		{"registry..example.com", "empty host label"},
		{"registry.example.com/team/*", "glob in its path"},
		{"registry.example.com?x=1", "uses '?'"},
		{"reg?stry.example.com", "uses '?'"},
		{"registry.example.com#x", "is not host[:port][/path]"},
		{"user@registry.example.com", "is not host[:port][/path]"},
		{"%zz", "is not host[:port][/path]"},
		{"/team", "is not host[:port][/path]"},
	} {
		err := ValidateMatchImage(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestConfigRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no images", Options{}, "give at least one image pattern"},
		{"bad image", Options{MatchImages: []string{"ok.io", "https://x.io"}}, "has a scheme"},
		{"audience with space", Options{MatchImages: []string{"r.io"}, Audience: "a b"}, "must not contain spaces"},
		{"negative cache", Options{MatchImages: []string{"r.io"}, CacheDuration: -time.Second}, "must not be negative"},
		{"relative config dir", Options{MatchImages: []string{"r.io"}, ConfigDir: "node-credentials"}, "must be an absolute path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Config(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestValidate: the kubelet's rules on a whole config, as a kubelet
// started with a broken file would report them.
func TestValidate(t *testing.T) {
	base := func() *kubeletconfigv1.CredentialProviderConfig {
		cfg, err := Config(Options{MatchImages: []string{"r.io"}})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	f := false
	for _, tc := range []struct {
		name   string
		break_ func(*kubeletconfigv1.CredentialProviderConfig)
		want   string
	}{
		{"wrong kind", func(c *kubeletconfigv1.CredentialProviderConfig) { c.Kind = "KubeletConfiguration" }, "want kubelet.config.k8s.io/v1 CredentialProviderConfig"},
		{"no providers", func(c *kubeletconfigv1.CredentialProviderConfig) { c.Providers = nil }, "at least one provider"},
		{"name with slash", func(c *kubeletconfigv1.CredentialProviderConfig) { c.Providers[0].Name = "bin/x" }, "must be a file name"},
		{"name dotdot", func(c *kubeletconfigv1.CredentialProviderConfig) { c.Providers[0].Name = ".." }, "must be a file name"},
		{"duplicate name", func(c *kubeletconfigv1.CredentialProviderConfig) { c.Providers = append(c.Providers, c.Providers[0]) }, "appears twice"},
		{"old apiVersion", func(c *kubeletconfigv1.CredentialProviderConfig) {
			c.Providers[0].APIVersion = "credentialprovider.kubelet.k8s.io/v1beta1"
		}, "use credentialprovider.kubelet.k8s.io/v1"},
		{"no matchImages", func(c *kubeletconfigv1.CredentialProviderConfig) { c.Providers[0].MatchImages = nil }, "matchImages: at least one"},
		{"no cache duration", func(c *kubeletconfigv1.CredentialProviderConfig) { c.Providers[0].DefaultCacheDuration = nil }, "defaultCacheDuration is required"},
		{"negative cache duration", func(c *kubeletconfigv1.CredentialProviderConfig) {
			c.Providers[0].DefaultCacheDuration = &metav1.Duration{Duration: -1}
		}, "must not be negative"},
		{"no audience", func(c *kubeletconfigv1.CredentialProviderConfig) {
			c.Providers[0].TokenAttributes.ServiceAccountTokenAudience = ""
		}, "serviceAccountTokenAudience is required"},
		{"no requireServiceAccount", func(c *kubeletconfigv1.CredentialProviderConfig) {
			c.Providers[0].TokenAttributes.RequireServiceAccount = nil
		}, "requireServiceAccount is required"},
		{"bad cacheType", func(c *kubeletconfigv1.CredentialProviderConfig) { c.Providers[0].TokenAttributes.CacheType = "Pod" }, `cacheType "Pod"`},
		{"required keys without SA", func(c *kubeletconfigv1.CredentialProviderConfig) {
			c.Providers[0].TokenAttributes.RequireServiceAccount = &f
			c.Providers[0].TokenAttributes.RequiredServiceAccountAnnotationKeys = []string{"a"}
		}, "need requireServiceAccount: true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.break_(cfg)
			err := Validate(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
