package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azcloud "github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"regcred.dev/regcred/internal/egress"
)

// ACRClientSecret is the key of an Azure application's client secret in
// its Secret.
const ACRClientSecret = "clientSecret"

// acrScope is the Entra ID scope ACR accepts tokens of.
const acrScope = "https://containerregistry.azure.net/.default"

// ACR exchanges an Entra ID token for an ACR refresh token.
type ACR struct {
	// Registry is the login server.
	Registry string
	TenantID string
	ClientID string
	// AuthorityHost overrides https://login.microsoftonline.com/.
	AuthorityHost string
	Identity      Identity
	Env           Env
}

var _ Fetcher = (*ACR)(nil)

// Key implements Fetcher: a refresh token is per registry and identity.
func (f *ACR) Key() string {
	return fmt.Sprintf("acr|%s|%s|%s|%s|%s", f.Registry, f.TenantID, f.ClientID, f.AuthorityHost, f.Identity.id())
}

// Kind implements Fetcher.
func (f *ACR) Kind() string { return KindACR }

// Fetch implements Fetcher.
func (f *ACR) Fetch(ctx context.Context) (*Token, error) {
	cred, err := f.credential(ctx)
	if err != nil {
		return nil, err
	}
	aad, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScope}, TenantID: f.TenantID})
	if err != nil {
		return nil, classifyAzure(err, f.Identity)
	}
	received := f.Env.now()
	refresh, err := f.exchange(ctx, aad.Token)
	if err != nil {
		return nil, err
	}
	exp, err := jwtExpiry(refresh)
	if err != nil {
		return nil, err
	}
	return &Token{Auth: Auth{Username: ACRUsername, Password: refresh}, ReceivedAt: received, ExpiresAt: exp}, nil
}

func (f *ACR) clientOptions() azcore.ClientOptions {
	// The cache retries with its own backoff; SDK retries would multiply
	// requests to a failing (or hostile) endpoint.
	o := azcore.ClientOptions{Transport: f.Env.client(), Retry: policy.RetryOptions{MaxRetries: -1}}
	if f.AuthorityHost != "" {
		o.Cloud = azcloud.Configuration{ActiveDirectoryAuthorityHost: f.AuthorityHost, Services: map[azcloud.ServiceName]azcloud.ServiceConfiguration{}}
	}
	return o
}

func (f *ACR) credential(ctx context.Context) (azcore.TokenCredential, error) {
	id := f.Identity
	// Instance discovery asks login.microsoft.com about the authority:
	// pointless for a configured one.
	disco := f.AuthorityHost != ""
	switch {
	case id.WebIdentity != nil:
		if f.TenantID == "" || f.ClientID == "" {
			return nil, errorf(Invalid, "an Azure web identity needs tenantID and clientID")
		}
		c, err := azidentity.NewClientAssertionCredential(f.TenantID, f.ClientID, id.subjectToken,
			&azidentity.ClientAssertionCredentialOptions{ClientOptions: f.clientOptions(), DisableInstanceDiscovery: disco})
		if err != nil {
			return nil, errorf(Invalid, "Azure web identity: %v", err)
		}
		return c, nil
	case id.Keys != nil:
		if f.TenantID == "" || f.ClientID == "" {
			return nil, errorf(Invalid, "an Azure client secret needs tenantID and clientID")
		}
		data, err := id.keys(ctx, ACRClientSecret)
		if err != nil {
			return nil, err
		}
		c, err := azidentity.NewClientSecretCredential(f.TenantID, f.ClientID, strings.TrimSpace(string(data[ACRClientSecret])),
			&azidentity.ClientSecretCredentialOptions{ClientOptions: f.clientOptions(), DisableInstanceDiscovery: disco})
		if err != nil {
			return nil, errorf(Invalid, "Azure client secret credential: %v", err)
		}
		return c, nil
	default:
		c, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions: f.clientOptions(), TenantID: f.TenantID, DisableInstanceDiscovery: disco})
		if err != nil {
			return nil, errorf(IdentityNotFound, "no Azure ambient identity: %v", err)
		}
		return c, nil
	}
}

// exchange trades the Entra ID token for an ACR refresh token at the
// registry's /oauth2/exchange.
func (f *ACR) exchange(ctx context.Context, aadToken string) (string, error) {
	form := url.Values{
		"grant_type":   {"access_token"},
		"service":      {f.Registry},
		"access_token": {aadToken},
	}
	if f.TenantID != "" {
		form.Set("tenant", f.TenantID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+f.Registry+"/oauth2/exchange", strings.NewReader(form.Encode()))
	if err != nil {
		return "", errorf(Invalid, "ACR exchange request: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.Env.client().Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL holds no secret, but keep it short
		}
		return "", errorf(TokenRequestFailed, "ACR token exchange at %s: %v", f.Registry, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if errors.Is(err, egress.ErrBodyTooLarge) {
		return "", errorf(TokenRequestFailed, "ACR token exchange at %s: HTTP %d: %v", f.Registry, resp.StatusCode, egress.ErrBodyTooLarge)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return "", errorf(Throttled, "ACR token exchange at %s: throttled (HTTP 429)", f.Registry)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", errorf(AccessDenied, "ACR token exchange at %s: HTTP %d: %s is not allowed to pull", f.Registry, resp.StatusCode, f.Identity.Describe())
	case resp.StatusCode != http.StatusOK:
		return "", errorf(TokenRequestFailed, "ACR token exchange at %s: HTTP %d", f.Registry, resp.StatusCode)
	}
	var out struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.RefreshToken == "" {
		return "", errorf(TokenRequestFailed, "ACR token exchange at %s: the answer holds no refresh_token", f.Registry)
	}
	return out.RefreshToken, nil
}

// jwtExpiry reads the exp claim of a token without verifying it: the
// registry verifies it, regcred only schedules the refresh.
func jwtExpiry(raw string) (time.Time, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.HS256})
	if err != nil {
		return time.Time{}, errorf(TokenRequestFailed, "the refresh token is not a JWT")
	}
	var claims jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil || claims.Expiry == nil {
		return time.Time{}, errorf(TokenRequestFailed, "the refresh token has no exp claim")
	}
	return claims.Expiry.Time(), nil
}

// classifyAzure turns an azidentity error into a reason.
func classifyAzure(err error, id Identity) error {
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	var af *azidentity.AuthenticationFailedError
	if errors.As(err, &af) {
		status := 0
		if af.RawResponse != nil {
			status = af.RawResponse.StatusCode
		}
		msg := fmt.Sprintf("Entra ID token request as %s: HTTP %d", id.Describe(), status)
		if errors.Is(err, egress.ErrBodyTooLarge) || strings.Contains(err.Error(), egress.ErrBodyTooLarge.Error()) {
			msg += ": " + egress.ErrBodyTooLarge.Error()
		}
		switch {
		case status == http.StatusTooManyRequests:
			return &Error{Reason: Throttled, Message: msg}
		case status == http.StatusBadRequest || status == http.StatusUnauthorized || status == http.StatusForbidden:
			return &Error{Reason: AccessDenied, Message: msg + ": the identity was refused"}
		}
		return &Error{Reason: TokenRequestFailed, Message: msg}
	}
	if strings.Contains(err.Error(), "CredentialUnavailable") || strings.Contains(err.Error(), "no credential") {
		return errorf(IdentityNotFound, "no Azure identity available: %v", err)
	}
	return errorf(TokenRequestFailed, "Entra ID token request as %s: %v", id.Describe(), err)
}
