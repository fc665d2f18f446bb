package controller

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/egress"
)

// TestTenantEnvGuardsCloudEndpoints: a tenant's cloud source on a
// loopback endpoint (Google STS, the ECR API) is refused at connect time
// through the SDKs' own clients; the cluster Env is not guarded.
func TestTenantEnvGuardsCloudEndpoints(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer srv.Close()
	cluster := cloud.Env{HTTPClient: srv.Client()}
	tenant := tenantEnv(cluster, &egress.Guard{})
	webID := cloud.Identity{WebIdentity: &cloud.WebIdentity{ServiceAccount: "team/app", Audience: "aud",
		Token: func(context.Context) (string, error) { return "subject", nil }}}
	keys := cloud.Identity{KeysID: "team/aws", Keys: func(context.Context) (map[string][]byte, error) {
		return map[string][]byte{cloud.AWSAccessKeyID: []byte("AKID"), cloud.AWSSecretAccessKey: []byte("secret")}, nil
	}}
	for name, f := range map[string]func(cloud.Env) cloud.Fetcher{
		"gcp": func(env cloud.Env) cloud.Fetcher {
			return &cloud.GCP{TokenURL: srv.URL + "/v1/token", Identity: webID, Env: env}
		},
		"ecr": func(env cloud.Env) cloud.Fetcher {
			return &cloud.ECR{Region: "eu-west-1", Endpoint: srv.URL, Identity: keys, Env: env}
		},
	} {
		hits.Store(0)
		_, err := f(tenant).Fetch(context.Background())
		if err == nil || !strings.Contains(err.Error(), egress.ErrBlocked.Error()) || hits.Load() != 0 {
			t.Errorf("%s, tenant: %v with %d requests; want blocked before connecting", name, err, hits.Load())
		}
		_, _ = f(cluster).Fetch(context.Background())
		if hits.Load() == 0 {
			t.Errorf("%s, cluster: no request reached the endpoint", name)
		}
	}
}
