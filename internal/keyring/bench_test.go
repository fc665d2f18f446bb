package keyring

import (
	"fmt"
	"testing"

	"regcred.dev/regcred/internal/dockercfg"
)

// BenchmarkLookup100Keys matches one image against 100 registry keys of
// mixed shapes (hosts, globs, ports, path prefixes, schemes).
func BenchmarkLookup100Keys(b *testing.B) {
	cfg := &dockercfg.Config{Auths: map[string]dockercfg.Entry{}}
	for i := range 100 {
		var key string
		switch i % 5 {
		case 0:
			key = fmt.Sprintf("registry%d.example.com", i)
		case 1:
			key = fmt.Sprintf("*.team%d.example.com", i)
		case 2:
			key = fmt.Sprintf("registry.example.com:%d/team%d", 5000+i, i)
		case 3:
			key = fmt.Sprintf("https://mirror%d.example.com/v2/", i)
		case 4:
			key = fmt.Sprintf("registry.example.com/team%d", i)
		}
		cfg.Auths[key] = dockercfg.Entry{Username: "u", Password: "p"}
	}
	var k Keyring
	k.Add("bench", cfg)
	for _, image := range []string{"registry.example.com/team44/app:v1", "nginx"} {
		b.Run(image, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := k.LookupImage(image); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("repo only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = k.Lookup("registry.example.com/team44/app")
		}
	})
}
