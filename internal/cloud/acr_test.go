package cloud_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/testenv/fakecloud"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// acrWorld is a token-auth registry that serves ACR's token exchange, and
// an Entra ID tenant.
func acrWorld(t *testing.T) (*world, *fakecloud.Azure) {
	t.Helper()
	az, err := fakecloud.StartAzure("11111111-2222-3333-4444-555555555555")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close)
	reg, err := testregistry.Start(testregistry.Token, testregistry.WithHandler("/oauth2/exchange", az.Exchange()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	az.ServeRegistry(reg.Host, reg)
	if _, err := reg.PushRandomImage(context.Background(), "team/app:v1"); err != nil {
		t.Fatal(err)
	}
	return &world{reg: reg, image: reg.Ref("team/app:v1")}, az
}

func TestACRClientSecret(t *testing.T) {
	w, az := acrWorld(t)
	az.SetLife(75 * time.Minute)
	secret := az.NewClientSecret("app-1")
	f := &cloud.ACR{Registry: w.reg.Host, TenantID: az.Tenant, ClientID: "app-1", AuthorityHost: az.URL + "/",
		Env: cloud.Env{HTTPClient: fakecloud.ClientTrusting(az.CA.CertPEM, w.reg.CA.CertPEM)},
		Identity: cloud.Identity{KeysID: "regcred/azure", Keys: func(context.Context) (map[string][]byte, error) {
			return map[string][]byte{cloud.ACRClientSecret: []byte(secret)}, nil
		}}}
	before := time.Now()
	tok, err := f.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Auth.Username != cloud.ACRUsername {
		t.Errorf("username %q, want %s", tok.Auth.Username, cloud.ACRUsername)
	}
	// The expiry is the refresh token's exp claim.
	if life := tok.ExpiresAt.Sub(before); life < 74*time.Minute || life > 75*time.Minute+time.Second {
		t.Errorf("token life %s, want 75m from the JWT's exp", life)
	}
	if err := w.pull(t, tok.Auth); err != nil {
		t.Fatalf("pull with the ACR refresh token: %v", err)
	}

	az.RevokeClient("app-1")
	_, err = f.Fetch(context.Background())
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Reason != cloud.AccessDenied {
		t.Fatalf("revoked client: %v, want AccessDenied", err)
	}
	if strings.Contains(ce.Message, secret) {
		t.Errorf("the message holds the client secret: %q", ce.Message)
	}
}

func TestACRNeedsTenantAndClient(t *testing.T) {
	f := &cloud.ACR{Registry: "example.azurecr.io", Identity: cloud.Identity{KeysID: "x/y", Keys: func(context.Context) (map[string][]byte, error) {
		return map[string][]byte{cloud.ACRClientSecret: []byte("s")}, nil
	}}}
	_, err := f.Fetch(context.Background())
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Reason != cloud.Invalid || !strings.Contains(ce.Message, "tenantID and clientID") {
		t.Errorf("got %v, want SourceInvalid naming tenantID and clientID", err)
	}
}
