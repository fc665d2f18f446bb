package nodeplugin

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzValidateResponse: the answer check never panics, never quotes the
// token in its error, and what it accepts survives the re-encoding the
// plugin writes to stdout.
func FuzzValidateResponse(f *testing.F) {
	for _, seed := range []string{
		goodAnswer,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Global"}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"-1s"}`,
		`{"apiVersion":"` + token + `","kind":"CredentialProviderResponse","cacheKeyType":"Image"}`,
		`{"auth":{"":{"password":1}}}`,
		`null`, `[]`, ``, `{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := ValidateResponse(body, token)
		if err != nil {
			if strings.Contains(err.Error(), token) || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error %q", err)
			}
			return
		}
		b, err := json.Marshal(resp)
		if err != nil {
			t.Fatalf("accepted answer does not encode: %v", err)
		}
		if _, err := ValidateResponse(b, token); err != nil {
			t.Fatalf("re-encoded answer refused: %v\n%s", err, b)
		}
	})
}
