package cloud_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/testenv/fakecloud"
)

func startGoogle(t *testing.T, w *world) *fakecloud.Google {
	t.Helper()
	g, err := fakecloud.StartGoogle(w.reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func TestGCPServiceAccountKey(t *testing.T) {
	w := newWorld(t)
	g := startGoogle(t, w)
	g.SetLife(15 * time.Minute)
	keyJSON, err := g.NewServiceAccountKey("puller@regcred-test.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	f := &cloud.GCP{Env: cloud.Env{HTTPClient: fakecloud.ClientTrusting(g.CA.CertPEM)},
		Identity: cloud.Identity{KeysID: "regcred/gcp-key", Keys: func(context.Context) (map[string][]byte, error) {
			return map[string][]byte{cloud.GCPKeyFile: keyJSON}, nil
		}}}
	before := time.Now()
	tok, err := f.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Auth.Username != cloud.GCPUsername {
		t.Errorf("username %q, want %s", tok.Auth.Username, cloud.GCPUsername)
	}
	// The life comes from expires_in: 15 minutes, not a default hour.
	if life := tok.ExpiresAt.Sub(before); life > 15*time.Minute+time.Second || life < 14*time.Minute {
		t.Errorf("token life %s, want about 15m", life)
	}
	if err := w.pull(t, tok.Auth); err != nil {
		t.Fatalf("pull with the Google token: %v", err)
	}

	g.DeleteKey("puller@regcred-test.iam.gserviceaccount.com")
	_, err = f.Fetch(context.Background())
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Reason != cloud.AccessDenied || !strings.Contains(ce.Message, "invalid_grant") {
		t.Errorf("with a deleted key: %v, want AccessDenied invalid_grant", err)
	}
	if strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("the error quotes the key: %v", err)
	}
}

func TestGCPBadKeyFile(t *testing.T) {
	f := &cloud.GCP{Identity: cloud.Identity{KeysID: "regcred/gcp-key", Keys: func(context.Context) (map[string][]byte, error) {
		return map[string][]byte{cloud.GCPKeyFile: []byte(`{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"`)}, nil
	}}}
	_, err := f.Fetch(context.Background())
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Reason != cloud.Invalid {
		t.Fatalf("got %v, want SourceInvalid", err)
	}
	if strings.Contains(ce.Message, "c2VjcmV0") || strings.Contains(ce.Message, "PRIVATE") {
		t.Errorf("the error quotes the key file: %q", ce.Message)
	}
}

func TestGCPMetadataServer(t *testing.T) {
	w := newWorld(t)
	g := startGoogle(t, w)
	t.Setenv("GCE_METADATA_HOST", g.MetadataHost())
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	t.Setenv("HOME", t.TempDir()) // no gcloud well-known file
	g.SetLife(10 * time.Minute)
	f := &cloud.GCP{}
	tok, err := f.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.pull(t, tok.Auth); err != nil {
		t.Fatalf("pull with the metadata token: %v", err)
	}
	// The metadata client retries 429 five times itself.
	g.Throttle(100)
	_, err = f.Fetch(context.Background())
	g.Throttle(0)
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Reason != cloud.Throttled {
		t.Errorf("throttled metadata server: %v, want Throttled", err)
	}
	g.SetMetadataAccount(false)
	_, err = f.Fetch(context.Background())
	if !errors.As(err, &ce) || ce.Reason != cloud.IdentityNotFound {
		t.Errorf("metadata server without a service account: %v, want IdentityNotFound", err)
	}
}
