package cloud_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/testenv/fakecloud"
)

// TestGCPKeyTokenURI: a key file's token_uri is where its signed
// assertion goes; with KeyTokenURLAllowed set (a tenant's key), a
// token_uri neither Google's nor allowed is refused before any request.
func TestGCPKeyTokenURI(t *testing.T) {
	w := newWorld(t)
	g := startGoogle(t, w)
	keyJSON, err := g.NewServiceAccountKey("puller@regcred-test.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int32
	fetch := func(allow bool) error {
		f := &cloud.GCP{Env: cloud.Env{HTTPClient: fakecloud.ClientTrusting(g.CA.CertPEM)},
			Identity: cloud.Identity{KeysID: "shop/gcp-key", Keys: func(context.Context) (map[string][]byte, error) {
				return map[string][]byte{cloud.GCPKeyFile: keyJSON}, nil
			}},
			KeyTokenURLAllowed: func(u string) bool { asked.Add(1); return allow }}
		_, err := f.Fetch(context.Background())
		return err
	}
	err = fetch(false)
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Reason != cloud.Invalid || !strings.Contains(ce.Message, "token_uri") || !strings.Contains(ce.Message, "shop/gcp-key") {
		t.Fatalf("a key whose token_uri is not allowed: %v, want SourceInvalid naming token_uri and the Secret", err)
	}
	if strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("the error quotes the key: %v", err)
	}
	if asked.Load() != 1 {
		t.Errorf("the allow-list was asked %d times, want 1", asked.Load())
	}
	if err := fetch(true); err != nil {
		t.Errorf("a key whose token_uri is allowed: %v", err)
	}
}

// TestGCPKeyDefaultTokenURI: Google's own token_uri needs no allow-list
// entry (the check passes; the request then fails for want of network).
func TestGCPKeyDefaultTokenURI(t *testing.T) {
	key := []byte(`{"type":"service_account","client_email":"a@b.iam.gserviceaccount.com","private_key":"x","token_uri":"` + cloud.GCPDefaultTokenURL + `"}`)
	f := &cloud.GCP{Identity: cloud.Identity{KeysID: "shop/k", Keys: func(context.Context) (map[string][]byte, error) {
		return map[string][]byte{cloud.GCPKeyFile: key}, nil
	}}, KeyTokenURLAllowed: func(string) bool { t.Error("asked about Google's own token_uri"); return false }}
	_, err := f.Fetch(context.Background())
	if err != nil && strings.Contains(err.Error(), "token_uri") {
		t.Errorf("Google's own token_uri refused: %v", err)
	}
}
