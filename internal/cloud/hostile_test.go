package cloud_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/testenv/fakecloud"
	"regcred.dev/regcred/internal/testenv/testregistry"
	"regcred.dev/regcred/internal/testenv/testserver"
)

const floodMarker = "HOSTILE-TOKEN-ENDPOINT"

// floodServer answers every request with status and up to 100 MiB,
// counting what it managed to write.
func floodServer(t *testing.T, status int) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	written := &atomic.Int64{}
	srv := httptest.NewTLSServer(floodHandler(status, written))
	t.Cleanup(srv.Close)
	return srv, written
}

func floodHandler(status int, written *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		testserver.Flood(w, r, status, floodMarker, written)
	}
}

// assertBounded: the fetch failed promptly with a cloud error of at most
// 1 KiB holding no body text, and the server could not send much.
func assertBounded(t *testing.T, err error, took time.Duration, written *atomic.Int64) {
	t.Helper()
	var ce *cloud.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a cloud error", err)
	}
	if len(ce.Message) > 1024 || strings.Contains(ce.Message, floodMarker) {
		t.Errorf("%s: %d-byte message %.300q holds the body", ce.Reason, len(ce.Message), ce.Message)
	}
	if took > 20*time.Second {
		t.Errorf("took %s", took)
	}
	time.Sleep(100 * time.Millisecond)
	if n := written.Load(); n > 16<<20 {
		t.Errorf("the server wrote %d MiB: the client read on", n>>20)
	}
	t.Logf("%s: %q; server wrote %d KiB", ce.Reason, ce.Message, written.Load()>>10)
}

// TestHugeTokenAnswers: each cloud's token endpoint answering 100 MiB
// costs a fetch 64 KiB and a bounded error.
func TestHugeTokenAnswers(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusBadRequest} {
		srv, written := floodServer(t, status)
		env := cloud.Env{HTTPClient: srv.Client()}
		webID := cloud.Identity{WebIdentity: &cloud.WebIdentity{ServiceAccount: "team/app", Audience: "aud", RoleARN: "arn:aws:iam::1:role/r",
			Token: func(context.Context) (string, error) { return "subject-token", nil }}}
		for name, f := range map[string]cloud.Fetcher{
			"ecr": &cloud.ECR{Region: "eu-west-1", Endpoint: srv.URL, Env: env,
				Identity: keysIdentity(map[string]string{cloud.AWSAccessKeyID: "AKID", cloud.AWSSecretAccessKey: "secret"})},
			"ecr-sts": &cloud.ECR{Region: "eu-west-1", Endpoint: srv.URL, Env: env, Identity: webID},
			"gcp-sts": &cloud.GCP{TokenURL: srv.URL + "/v1/token", Env: env, Identity: webID},
			"entra": &cloud.ACR{Registry: "reg.example", TenantID: "11111111-2222-3333-4444-555555555555", ClientID: "app", AuthorityHost: srv.URL + "/", Env: env,
				Identity: cloud.Identity{KeysID: "team/azure", Keys: func(context.Context) (map[string][]byte, error) {
					return map[string][]byte{cloud.ACRClientSecret: []byte("client-secret")}, nil
				}}},
		} {
			t.Run(http.StatusText(status)+"/"+name, func(t *testing.T) {
				written.Store(0)
				// STS of the web identity is the flooding server too.
				t.Setenv("AWS_ENDPOINT_URL_STS", srv.URL)
				start := time.Now()
				_, err := f.Fetch(context.Background())
				srv.CloseClientConnections()
				assertBounded(t, err, time.Since(start), written)
			})
		}
	}
}

// TestHugeACRExchange: a registry whose /oauth2/exchange answers 100 MiB
// after a good Entra ID token.
func TestHugeACRExchange(t *testing.T) {
	az, err := fakecloud.StartAzure("11111111-2222-3333-4444-555555555555")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close)
	written := &atomic.Int64{}
	reg, err := testregistry.Start(testregistry.Token, testregistry.WithHandler("/oauth2/exchange", floodHandler(http.StatusOK, written)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	secret := az.NewClientSecret("app-1")
	f := &cloud.ACR{Registry: reg.Host, TenantID: az.Tenant, ClientID: "app-1", AuthorityHost: az.URL + "/",
		Env: cloud.Env{HTTPClient: fakecloud.ClientTrusting(az.CA.CertPEM, reg.CA.CertPEM)},
		Identity: cloud.Identity{KeysID: "regcred/azure", Keys: func(context.Context) (map[string][]byte, error) {
			return map[string][]byte{cloud.ACRClientSecret: []byte(secret)}, nil
		}}}
	start := time.Now()
	_, err = f.Fetch(context.Background())
	assertBounded(t, err, time.Since(start), written)
	if !strings.Contains(err.Error(), "64 KiB") {
		t.Errorf("%q does not say the answer was too large", err)
	}
}
