package cli

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/pflag"

	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/registry"
)

// gcpRegistries are Google's registry hosts, as the kubelet's own Google
// credential provider matches them.
var gcpRegistries = []string{"gcr.io", "*.gcr.io", "*.pkg.dev"}

// cloudFlags make a one-off Secret from a cloud token, with the caller's
// own ambient identity (environment, profile, metadata server).
type cloudFlags struct {
	ecrRegion string
	ecrPublic bool
	gcp       bool
	acr       string
	tenantID  string
	clientID  string
	endpoint  string
	caFiles   []string
}

func (c *cloudFlags) addFlags(f *pflag.FlagSet) {
	f.StringVar(&c.ecrRegion, "from-ecr", "", "get an ECR token for this region with your AWS identity (environment, profile, SSO, instance role); valid 12 hours")
	f.BoolVar(&c.ecrPublic, "from-ecr-public", false, "get an ECR Public (public.ecr.aws) token with your AWS identity")
	f.BoolVar(&c.gcp, "from-gcp", false, "get a Google access token (Artifact Registry, GCR) with your application default credentials; valid about an hour")
	f.StringVar(&c.acr, "from-acr", "", "get an ACR refresh token for this login server (example.azurecr.io) with your Azure identity; valid about 3 hours")
	f.StringVar(&c.tenantID, "tenant-id", "", "with --from-acr: the Entra ID tenant")
	f.StringVar(&c.clientID, "client-id", "", "with --from-acr: the application or managed identity")
	f.StringVar(&c.endpoint, "endpoint", "", "with --from-ecr: the ECR API endpoint (a VPC endpoint); with --from-acr: the Entra ID authority host")
	f.StringArrayVar(&c.caFiles, "cloud-ca-file", nil, "trust this CA (PEM) for the cloud's endpoints besides the system's (repeatable)")
}

// kind names the cloud asked, for origins and messages.
func (c *cloudFlags) kind() string {
	switch {
	case c.ecrPublic:
		return "ECR Public"
	case c.ecrRegion != "":
		return "ECR " + c.ecrRegion
	case c.gcp:
		return "Google"
	default:
		return "ACR " + c.acr
	}
}

func (c *cloudFlags) set() bool {
	return c.ecrRegion != "" || c.ecrPublic || c.gcp || c.acr != ""
}

// fetcher checks the flags and builds the one fetcher they ask for.
func (c *cloudFlags) fetcher() (cloud.Fetcher, error) {
	n := 0
	for _, on := range []bool{c.ecrRegion != "", c.ecrPublic, c.gcp, c.acr != ""} {
		if on {
			n++
		}
	}
	if n != 1 {
		return nil, usageErrorf("give exactly one of --from-ecr, --from-ecr-public, --from-gcp or --from-acr")
	}
	if (c.tenantID != "" || c.clientID != "") && c.acr == "" {
		return nil, usageErrorf("--tenant-id and --client-id only apply with --from-acr")
	}
	if c.endpoint != "" && c.gcp {
		return nil, usageErrorf("--endpoint does not apply with --from-gcp")
	}
	env := cloud.Env{}
	if len(c.caFiles) > 0 {
		pool, err := registry.CAPool(c.caFiles)
		if err != nil {
			return nil, usageErrorf("--cloud-ca-file: %v", err)
		}
		env.HTTPClient = &http.Client{Transport: registry.Transport(pool), Timeout: time.Minute}
	}
	switch {
	case c.ecrRegion != "" || c.ecrPublic:
		return &cloud.ECR{Region: c.ecrRegion, Public: c.ecrPublic, Endpoint: c.endpoint, Env: env}, nil
	case c.gcp:
		return &cloud.GCP{Env: env}, nil
	default:
		authority := c.endpoint
		return &cloud.ACR{Registry: c.acr, TenantID: c.tenantID, ClientID: c.clientID, AuthorityHost: authority, Env: env}, nil
	}
}

// config gets the token and keys it by registries: the given ones, or
// those the cloud names.
func (c *cloudFlags) config(ctx context.Context, registries []string) (*dockercfg.Config, time.Time, error) {
	f, err := c.fetcher()
	if err != nil {
		return nil, time.Time{}, err
	}
	tok, err := f.Fetch(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	if len(registries) == 0 {
		switch {
		case c.gcp:
			registries = gcpRegistries
		case c.acr != "":
			registries = []string{c.acr}
		case tok.Registry != "":
			registries = []string{tok.Registry}
		default:
			return nil, time.Time{}, fmt.Errorf("the cloud named no registry: give --registry")
		}
	}
	return tok.Config(registries), tok.ExpiresAt, nil
}
