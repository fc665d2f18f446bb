package dockercfg

import (
	"reflect"
	"testing"
)

func FuzzParseDockerConfigJSON(f *testing.F) {
	for _, seed := range []string{
		`{"auths":{"r.io":{"auth":"dTpw"}}}`,
		`{"auths":{"https://index.docker.io/v1/":{"username":"u","password":"p","email":"e"}}}`,
		`{"auths":{"a":{"auth":"Zm9vOm\nJhcg==\n"},"b":{"identitytoken":"t"}}}`,
		`{"Auths":{"a":null}}`,
		`{"auths":{"a":{"auth":"pants"}}}`,
		`{"auths":[]}`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseDockerConfigJSON(data)
		cfg2, err2 := ParseDockerConfigJSON(data)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("not deterministic: %v vs %v", err, err2)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(cfg, cfg2) {
			t.Fatal("not deterministic")
		}
		if cfg.Validate() != nil {
			return
		}
		out, err := cfg.MarshalDockerConfigJSON()
		if err != nil {
			t.Fatalf("valid config failed to render: %v", err)
		}
		back, err := ParseDockerConfigJSON(out)
		if err != nil {
			t.Fatalf("rendered config does not parse: %v", err)
		}
		if !reflect.DeepEqual(back.Auths, cfg.Auths) {
			t.Fatalf("round trip changed the config")
		}
	})
}

func FuzzDecodeAuth(f *testing.F) {
	for _, seed := range []string{"Zm9vOmJhcg==", "Zm9vOmJhcg", "pants", "Zm9vOm\nJhcg==\n", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, field string) {
		user, pass, err := DecodeAuth(field)
		if err != nil {
			return
		}
		// A decoded credential re-encodes to something that decodes alike.
		u2, p2, err := DecodeAuth(EncodeAuth(user, pass))
		if err != nil || u2 != user || p2 != pass {
			t.Fatalf("re-encoding %q/%q does not round-trip", user, pass)
		}
	})
}
