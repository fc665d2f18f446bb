package dockercfg

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Several cases restate the kubelet's config tests
// (pkg/credentialprovider/config_test.go at v1.37.1).

func TestParseDockerConfigJSON(t *testing.T) {
	got, err := ParseDockerConfigJSON([]byte(`{"auths": {"http://foo.example.com":{"username": "foo", "password": "bar", "email": "foo@example.com"}, "http://bar.example.com":{"username": "bar", "password": "baz", "email": "bar@example.com"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Entry{
		"http://foo.example.com": {Username: "foo", Password: "bar", Email: "foo@example.com"},
		"http://bar.example.com": {Username: "bar", Password: "baz", Email: "bar@example.com"},
	}
	if !reflect.DeepEqual(got.Auths, want) {
		t.Errorf("got %v, want %v", got.Auths, want)
	}
}

func TestParseDockercfg(t *testing.T) {
	got, err := ParseDockercfg([]byte(`{"http://foo.example.com":{"username": "foo", "password": "bar", "email": "foo@example.com"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Entry{Username: "foo", Password: "bar", Email: "foo@example.com"}); got.Auths["http://foo.example.com"] != want {
		t.Errorf("got %v", got.Auths)
	}
	if _, err := ParseDockercfg([]byte(`{"http://foo.example.com":{"username": "foo", "password": "bar"`)); err == nil {
		t.Error("truncated .dockercfg parsed")
	}
}

func TestParseEntry(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    Entry
		wantErr string
	}{
		{"plain fields", `{"username": "foo", "password": "bar", "email": "foo@example.com"}`, Entry{Username: "foo", Password: "bar", Email: "foo@example.com"}, ""},
		{"auth decodes", `{"auth": "Zm9vOmJhcg==", "email": "foo@example.com"}`, Entry{Username: "foo", Password: "bar", Email: "foo@example.com"}, ""},
		{"auth wins over username/password", `{"username": "foo", "password": "bar", "auth": "cGluZzpwb25n", "email": "foo@example.com"}`, Entry{Username: "ping", Password: "pong", Email: "foo@example.com"}, ""},
		{"empty auth is ignored", `{"username": "foo", "password": "bar", "auth": ""}`, Entry{Username: "foo", Password: "bar"}, ""},
		{"bad base64 auth", `{"auth": "pants", "email": "foo@example.com"}`, Entry{}, `field "auth": not valid base64`},
		{"auth without colon", `{"auth": "cGFudHM="}`, Entry{}, `field "auth": does not decode to username:password`},
		{"wrong type", `{"email": false}`, Entry{}, `field "email": expected string, got a JSON bool`},
		{"numeric password is not echoed", `{"password": 12345}`, Entry{}, `field "password": expected string, got a JSON number`},
		{"identitytoken kept", `{"username": "00000000-0000-0000-0000-000000000000", "identitytoken": "tok"}`, Entry{Username: "00000000-0000-0000-0000-000000000000", IdentityToken: "tok"}, ""},
		{"identitytoken of the wrong type is ignored, as the kubelet does", `{"username": "u", "identitytoken": 5}`, Entry{Username: "u"}, ""},
		{"keys match case-insensitively", `{"Username": "U", "PASSWORD": "P"}`, Entry{Username: "U", Password: "P"}, ""},
		{"null entry", `null`, Entry{}, ""},
		{"string entry", `"x"`, Entry{}, `expected an object, got a JSON string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEntry(json.RawMessage(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestDecodeAuth(t *testing.T) {
	for _, tc := range []struct {
		in         string
		user, pass string
		fail       bool
	}{
		{in: "Zm9vOmJhcg==", user: "foo", pass: "bar"},
		{in: "Zm9vOmJhcg", user: "foo", pass: "bar"},
		{in: "Zm9vOm\nJhcg==\n", user: "foo", pass: "bar"},
		{in: base64.StdEncoding.EncodeToString([]byte("foo:bar")), user: "foo", pass: "bar"},
		{in: base64.RawStdEncoding.EncodeToString([]byte("foo:bar")), user: "foo", pass: "bar"},
		{in: EncodeAuth("foo", "bar"), user: "foo", pass: "bar"},
		{in: EncodeAuth("foo", "b:a:r"), user: "foo", pass: "b:a:r"},
		{in: "cGFudHM=", fail: true},
		{in: "Zm9vOmJhcg== ", fail: true},
		{in: "pants", fail: true},
		{in: "Zm9vOmJhcg=", fail: true},
	} {
		user, pass, err := DecodeAuth(tc.in)
		if (err != nil) != tc.fail {
			t.Errorf("DecodeAuth(%q): err = %v, want fail=%t", tc.in, err, tc.fail)
		}
		if user != tc.user || pass != tc.pass {
			t.Errorf("DecodeAuth(%q) = %q, %q; want %q, %q", tc.in, user, pass, tc.user, tc.pass)
		}
	}
}

func TestDocumentErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"truncated", `{"auths": {"a": {"username": "u"`, "truncated or empty JSON"},
		{"empty", ``, "truncated or empty JSON"},
		{"not JSON", `{"auths": {"a": {"password": "s3cr"et"}}}`, "malformed JSON near byte"},
		{"auths not an object", `{"auths": ["a"]}`, `field "auths": expected an object of registry entries, got a JSON array`},
		{"trailing garbage", `{"auths": {}} x`, "malformed JSON near byte"},
		{"bad entry named", `{"auths": {"good.io": {"auth": "Zm9vOmJhcg=="}, "bad.io": {"auth": "!!!"}}}`, `entry "bad.io": field "auth": not valid base64`},
		// The kubelet decodes every entry, also one a later entry under the
		// same key hides, and refuses the config.
		{"bad entry hidden by a repeat", `{"auths": {"r.io": {"auth": "!!!"}, "r.io": {"username": "u"}}}`, `field "auth": an entry repeated under the same registry key: not valid base64`},
		{"bad entry in a repeated auths", `{"auths": {"r.io": {"auth": "!!!"}}, "Auths": {"r.io": {"username": "u"}}}`, `an entry repeated under the same registry key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDockerConfigJSON([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Errorf("error %T is not a *dockercfg.Error", err)
			}
			for _, secret := range []string{"s3cr", "!!!"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q leaks input %q", err, secret)
				}
			}
		})
	}
}

func TestEmptyAndMissingAuths(t *testing.T) {
	for _, in := range []string{`{}`, `{"auths": {}}`, `{"auths": null}`, `{"HttpHeaders": {"a": "b"}}`} {
		cfg, err := ParseDockerConfigJSON([]byte(in))
		if err != nil {
			t.Errorf("%s: %v (the kubelet accepts it as an empty config)", in, err)
			continue
		}
		if len(cfg.Auths) != 0 {
			t.Errorf("%s: %d entries", in, len(cfg.Auths))
		}
		if !errors.Is(cfg.Validate(), ErrEmpty) {
			t.Errorf("%s: Validate() = %v, want ErrEmpty", in, cfg.Validate())
		}
	}
}

func TestParseSecretData(t *testing.T) {
	djson := []byte(`{"auths":{"r.io":{"auth":"dTpw"}}}`)
	dcfg := []byte(`{"r.io":{"auth":"dTpw"}}`)
	for _, tc := range []struct {
		name       string
		typ        string
		data       map[string][]byte
		registries []string
		want       map[string]Entry
		wantErr    string
	}{
		{"dockerconfigjson", SecretTypeDockerConfigJSON, map[string][]byte{DockerConfigJSONKey: djson}, nil, map[string]Entry{"r.io": {Username: "u", Password: "p"}}, ""},
		{"dockercfg", SecretTypeDockercfg, map[string][]byte{DockercfgKey: dcfg}, nil, map[string]Entry{"r.io": {Username: "u", Password: "p"}}, ""},
		{"basic-auth", SecretTypeBasicAuth, map[string][]byte{"username": []byte("u"), "password": []byte("p")}, []string{"a.io", "b.io"}, map[string]Entry{"a.io": {Username: "u", Password: "p"}, "b.io": {Username: "u", Password: "p"}}, ""},
		{"basic-auth without registries", SecretTypeBasicAuth, map[string][]byte{"username": []byte("u")}, nil, nil, "at least one registry"},
		{"basic-auth without keys", SecretTypeBasicAuth, map[string][]byte{"token": []byte("t")}, []string{"a.io"}, nil, "neither a username nor a password"},
		{"dockerconfigjson under the wrong key", SecretTypeDockerConfigJSON, map[string][]byte{DockercfgKey: dcfg}, nil, nil, `field ".dockerconfigjson": missing or empty`},
		{"opaque", "Opaque", map[string][]byte{DockerConfigJSONKey: djson}, nil, nil, `secret type "Opaque" is not a registry credential`},
		{"malformed names the key", SecretTypeDockerConfigJSON, map[string][]byte{DockerConfigJSONKey: []byte(`{"auths":{"r.io":{"auth":"%%%"}}}`)}, nil, nil, `.dockerconfigjson: entry "r.io": field "auth": not valid base64`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseSecretData(tc.typ, tc.data, tc.registries)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Auths, tc.want) {
				t.Errorf("got %v, want %v", cfg.Auths, tc.want)
			}
		})
	}
}

func TestRenderRoundTrip(t *testing.T) {
	cfg := &Config{Auths: map[string]Entry{
		"registry.example.com": {Username: "robot$ci", Password: "p@ss:w<rd>", Email: "ci@example.com"},
		"ghcr.io":              {Username: "u", Password: "p"},
		"myacr.azurecr.io":     {Username: "00000000-0000-0000-0000-000000000000", IdentityToken: "refresh"},
	}}
	b, err := cfg.MarshalDockerConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"auths":{"ghcr.io":{"username":"u","password":"p","auth":"dTpw"},` +
		`"myacr.azurecr.io":{"username":"00000000-0000-0000-0000-000000000000","auth":"MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwOg==","identitytoken":"refresh"},` +
		`"registry.example.com":{"username":"robot$ci","password":"p@ss:w\u003crd\u003e","email":"ci@example.com","auth":"cm9ib3QkY2k6cEBzczp3PHJkPg=="}}}`
	if string(b) != want {
		t.Errorf("rendered\n%s\nwant\n%s", b, want)
	}
	back, err := ParseDockerConfigJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Auths, cfg.Auths) {
		t.Errorf("round trip changed the config:\n%v\n%v", back.Auths, cfg.Auths)
	}

	legacy, err := cfg.MarshalDockercfg()
	if err != nil {
		t.Fatal(err)
	}
	back, err = ParseDockercfg(legacy)
	if err != nil || !reflect.DeepEqual(back.Auths, cfg.Auths) {
		t.Errorf("dockercfg round trip: %v, %v", back, err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *Config
		want string
	}{
		{"nil", nil, "no registry entries"},
		{"colon in username", &Config{Auths: map[string]Entry{"r.io": {Username: "a:b", Password: "p"}}}, `entry "r.io": field "username": must not contain a colon`},
		{"nothing to authenticate with", &Config{Auths: map[string]Entry{"r.io": {Email: "e"}}}, "has no username, password or identity token"},
		{"blank key", &Config{Auths: map[string]Entry{" ": {Username: "u"}}}, "empty registry key"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestEntryFormattingRedacts(t *testing.T) {
	e := Entry{Username: "user", Password: "hunter2", IdentityToken: "tok"}
	for _, s := range []string{e.String(), e.GoString()} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "tok") {
			t.Errorf("formatted entry leaks a secret: %s", s)
		}
	}
}
