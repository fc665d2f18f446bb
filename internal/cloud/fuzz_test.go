package cloud

import (
	"strings"
	"testing"
)

// FuzzPluginResponse: any plugin output is either a response the kubelet
// would take or an error that quotes none of it beyond short type names.
func FuzzPluginResponse(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"5m","auth":{"r.io":{"username":"u","password":"p"}}}`))
	f.Add([]byte(`{"kind":"CredentialProviderResponse"}`))
	f.Add([]byte(`password=hunter2`))
	f.Add([]byte(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Global","cacheDuration":"-1s"}`))
	f.Fuzz(func(t *testing.T, out []byte) {
		resp, err := parsePluginResponse("/p", out)
		if err != nil {
			if resp != nil {
				t.Fatal("both a response and an error")
			}
			msg := err.Error()
			if len(msg) > 400 {
				t.Fatalf("message of %d bytes quotes the output", len(msg))
			}
			for _, a := range []string{"password", "hunter2"} {
				if strings.Contains(string(out), a) && strings.Contains(msg, a) {
					t.Fatalf("message %q quotes the output", msg)
				}
			}
			return
		}
		if resp.CacheDuration != nil && resp.CacheDuration.Duration < 0 {
			t.Fatal("negative cacheDuration accepted")
		}
	})
}

// FuzzTokens: ECR's base64 user:password and ACR's JWT are parsed without
// panics, and failures never quote them.
func FuzzTokens(f *testing.F) {
	f.Add("QVdTOnNlY3JldA==")
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjE3OTM1MzQ0MDB9.c2ln")
	f.Add("not-a-token")
	f.Fuzz(func(t *testing.T, raw string) {
		if user, pass, err := decodeBasicToken(raw); err == nil {
			if user == "" || pass == "" {
				t.Fatal("empty user or password accepted")
			}
		} else if len(raw) > 8 && strings.Contains(err.Error(), raw) {
			t.Fatalf("error quotes the token: %v", err)
		}
		if _, err := jwtExpiry(raw); err != nil && len(raw) > 8 && strings.Contains(err.Error(), raw) {
			t.Fatalf("error quotes the token: %v", err)
		}
	})
}
