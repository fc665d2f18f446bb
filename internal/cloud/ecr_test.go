package cloud_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/testenv/fakecloud"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// world is a token-auth registry and the fake clouds that issue logins
// for it.
type world struct {
	reg   *testregistry.Registry
	image string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	reg, err := testregistry.Start(testregistry.Token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	image := reg.Ref("team/app:v1")
	if _, err := reg.PushRandomImage(context.Background(), "team/app:v1"); err != nil {
		t.Fatal(err)
	}
	return &world{reg: reg, image: image}
}

// pull fetches the image's manifest with a login, as a kubelet would.
func (w *world) pull(t *testing.T, a cloud.Auth) error {
	t.Helper()
	ref, err := name.ParseReference(w.image)
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Head(ref, remote.WithTransport(w.reg.Transport()), remote.WithAuth(&authn.Basic{Username: a.Username, Password: a.Password}))
	return err
}

func startAWS(t *testing.T, w *world) *fakecloud.AWS {
	t.Helper()
	a, err := fakecloud.StartAWS(w.reg, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func keysIdentity(data map[string]string) cloud.Identity {
	return cloud.Identity{KeysID: "regcred/aws-keys", Keys: func(context.Context) (map[string][]byte, error) {
		out := map[string][]byte{}
		for k, v := range data {
			out[k] = []byte(v)
		}
		return out, nil
	}}
}

func TestECRTokenPullsFromRegistry(t *testing.T) {
	w := newWorld(t)
	a := startAWS(t, w)
	id, secret := a.NewAccessKey()
	f := &cloud.ECR{Region: "eu-west-1", Endpoint: a.URL, Env: cloud.Env{HTTPClient: fakecloud.ClientTrusting(a.CA.CertPEM)},
		Identity: keysIdentity(map[string]string{cloud.AWSAccessKeyID: id, cloud.AWSSecretAccessKey: secret})}
	before := time.Now()
	tok, err := f.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Auth.Username != cloud.ECRUsername {
		t.Errorf("username %q, want AWS", tok.Auth.Username)
	}
	if life := tok.ExpiresAt.Sub(before); life < 11*time.Hour || life > 12*time.Hour+time.Minute {
		t.Errorf("token life %s, want about 12h", life)
	}
	if err := w.pull(t, tok.Auth); err != nil {
		t.Fatalf("pull with the ECR token: %v", err)
	}
	if got := a.TokensForKey(id); got != 1 {
		t.Errorf("%d tokens issued, want 1", got)
	}
	if strings.Contains(tok.Auth.String(), tok.Auth.Password) || strings.Contains((&cloud.Error{}).Error(), tok.Auth.Password) {
		t.Error("Auth.String shows the password")
	}
}

func TestECRPublic(t *testing.T) {
	w := newWorld(t)
	a := startAWS(t, w)
	id, secret := a.NewAccessKey()
	f := &cloud.ECR{Public: true, Endpoint: a.URL, Env: cloud.Env{HTTPClient: fakecloud.ClientTrusting(a.CA.CertPEM)},
		Identity: keysIdentity(map[string]string{cloud.AWSAccessKeyID: id, cloud.AWSSecretAccessKey: secret})}
	tok, err := f.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.pull(t, tok.Auth); err != nil {
		t.Fatalf("pull with the ECR Public token: %v", err)
	}
}

func TestECRFailures(t *testing.T) {
	w := newWorld(t)
	a := startAWS(t, w)
	id, secret := a.NewAccessKey()
	client := fakecloud.ClientTrusting(a.CA.CertPEM)
	fetcher := func(keys map[string]string) *cloud.ECR {
		return &cloud.ECR{Region: "eu-west-1", Endpoint: a.URL, Env: cloud.Env{HTTPClient: client}, Identity: keysIdentity(keys)}
	}
	good := map[string]string{cloud.AWSAccessKeyID: id, cloud.AWSSecretAccessKey: secret}

	tests := []struct {
		name   string
		setup  func()
		keys   map[string]string
		reason cloud.Reason
		want   string
	}{
		{name: "wrong secret key", keys: map[string]string{cloud.AWSAccessKeyID: id, cloud.AWSSecretAccessKey: "wrong" + secret[5:]},
			reason: cloud.AccessDenied, want: "InvalidSignatureException"},
		{name: "unknown key", keys: map[string]string{cloud.AWSAccessKeyID: "AKIAUNKNOWN", cloud.AWSSecretAccessKey: secret},
			reason: cloud.AccessDenied, want: "UnrecognizedClientException"},
		{name: "missing key", keys: map[string]string{cloud.AWSAccessKeyID: id},
			reason: cloud.Invalid, want: "has no aws_secret_access_key"},
		{name: "throttled", setup: func() { a.Throttle(1) }, keys: good, reason: cloud.Throttled, want: "ThrottlingException"},
		{name: "denied", setup: func() { a.Fail(http.StatusForbidden) }, keys: good, reason: cloud.AccessDenied, want: "AccessDeniedException"},
		{name: "server error", setup: func() { a.Fail(http.StatusInternalServerError) }, keys: good, reason: cloud.TokenRequestFailed, want: "ServerException"},
		{name: "revoked", setup: func() { a.RevokeAccessKey(id) }, keys: good, reason: cloud.AccessDenied, want: "UnrecognizedClientException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.Fail(0)
			if tt.setup != nil {
				tt.setup()
			}
			_, err := fetcher(tt.keys).Fetch(context.Background())
			var ce *cloud.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want a *cloud.Error", err, err)
			}
			if ce.Reason != tt.reason || !strings.Contains(ce.Message, tt.want) {
				t.Errorf("got %s: %q, want %s containing %q", ce.Reason, ce.Message, tt.reason, tt.want)
			}
			if strings.Contains(ce.Message, secret) {
				t.Errorf("the message holds the secret key: %q", ce.Message)
			}
		})
	}
}

// TestECRClockSkew: a cloud whose expiry is already past on the local
// clock gets a message naming clock skew, and no token is served.
func TestECRClockSkew(t *testing.T) {
	w := newWorld(t)
	a := startAWS(t, w)
	id, secret := a.NewAccessKey()
	a.SetSkew(-13 * time.Hour)
	f := &cloud.ECR{Region: "eu-west-1", Endpoint: a.URL, Env: cloud.Env{HTTPClient: fakecloud.ClientTrusting(a.CA.CertPEM)},
		Identity: keysIdentity(map[string]string{cloud.AWSAccessKeyID: id, cloud.AWSSecretAccessKey: secret})}
	c := cloud.NewCache(cloud.CacheOptions{})
	defer c.Close()
	_, err := c.Get(context.Background(), f)
	var ce *cloud.Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Message, "clock skewed") {
		t.Fatalf("got %v, want a failure naming clock skew", err)
	}
	// A cloud running ahead reports a longer life: the refresh comes at
	// half of it, still well before the real expiry of a 12-hour token
	// with minutes of skew.
	a.SetSkew(10 * time.Minute)
	f2 := *f
	f2.Region = "eu-west-1"
	f2.Identity.KeysID = "regcred/other-keys"
	l, err := c.Get(context.Background(), &f2)
	if err != nil {
		t.Fatal(err)
	}
	if real := time.Now().Add(12 * time.Hour); !l.RefreshAt.Before(real) {
		t.Errorf("refresh at %s, after the real expiry %s", l.RefreshAt, real)
	}
}
