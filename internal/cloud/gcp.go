package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/metadata"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"golang.org/x/oauth2/google/externalaccount"
)

// GCPKeyFile is the key of a Google service account key in its Secret.
const GCPKeyFile = "key.json"

// gcpScope lets the token read Artifact Registry and GCR.
const gcpScope = "https://www.googleapis.com/auth/cloud-platform"

// GCPDefaultTokenURL is where Google's service account keys are
// exchanged for tokens (a key file's usual token_uri).
const GCPDefaultTokenURL = "https://oauth2.googleapis.com/token"

// gcpSTSTokenURL is Google's security token service.
const gcpSTSTokenURL = "https://sts.googleapis.com/v1/token"

// GCP gets Google access tokens for Artifact Registry and GCR.
type GCP struct {
	Identity Identity
	// TokenURL overrides the STS endpoint of a web identity.
	TokenURL string
	// KeyTokenURLAllowed, when set, vets a key file's token_uri other
	// than Google's: the key's signed assertion goes there, so a key
	// from a tenant's Secret may not send the manager to any host.
	KeyTokenURLAllowed func(tokenURL string) bool
	Env                Env
}

var _ Fetcher = (*GCP)(nil)

// Key implements Fetcher: an access token serves every Google registry.
func (f *GCP) Key() string { return "gcp|" + f.TokenURL + "|" + f.Identity.id() }

// Kind implements Fetcher.
func (f *GCP) Kind() string { return KindGCP }

// Fetch implements Fetcher.
func (f *GCP) Fetch(ctx context.Context) (*Token, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, f.Env.client())
	ts, err := f.tokenSource(ctx)
	if err != nil {
		return nil, err
	}
	received := f.Env.now()
	tok, err := ts.Token()
	if err != nil {
		return nil, classifyOAuth(err, "Google token request", f.Identity)
	}
	if tok.AccessToken == "" {
		return nil, errorf(TokenRequestFailed, "Google returned no access token")
	}
	if tok.Expiry.IsZero() {
		return nil, errorf(TokenRequestFailed, "Google returned a token without an expiry")
	}
	return &Token{Auth: Auth{Username: GCPUsername, Password: tok.AccessToken}, ReceivedAt: received, ExpiresAt: tok.Expiry}, nil
}

func (f *GCP) tokenSource(ctx context.Context) (oauth2.TokenSource, error) {
	id := f.Identity
	switch {
	case id.WebIdentity != nil:
		url := f.TokenURL
		if url == "" {
			url = gcpSTSTokenURL
		}
		ts, err := externalaccount.NewTokenSource(ctx, externalaccount.Config{
			Audience:             id.WebIdentity.Audience,
			SubjectTokenType:     "urn:ietf:params:oauth:token-type:jwt",
			TokenURL:             url,
			Scopes:               []string{gcpScope},
			SubjectTokenSupplier: subjectSupplier{id},
		})
		if err != nil {
			return nil, errorf(Invalid, "Google web identity: %v", err)
		}
		return ts, nil
	case id.Keys != nil:
		data, err := id.keys(ctx, GCPKeyFile)
		if err != nil {
			return nil, err
		}
		if err := f.checkKeyTokenURL(data[GCPKeyFile]); err != nil {
			return nil, err
		}
		creds, err := google.CredentialsFromJSONWithTypeAndParams(ctx, data[GCPKeyFile], google.ServiceAccount, google.CredentialsParams{Scopes: []string{gcpScope}})
		if err != nil {
			// The parser's message may quote the key: say only where.
			return nil, errorf(Invalid, "Secret %s: %s is not a Google service account key", id.KeysID, GCPKeyFile)
		}
		return creds.TokenSource, nil
	default:
		creds, err := google.FindDefaultCredentials(ctx, gcpScope)
		if err != nil {
			return nil, errorf(IdentityNotFound, "no Google application default credentials: %v", err)
		}
		return creds.TokenSource, nil
	}
}

// checkKeyTokenURL refuses a key whose token_uri is neither Google's nor
// allowed. An unparsable key is left to the key parser's own error.
func (f *GCP) checkKeyTokenURL(key []byte) error {
	if f.KeyTokenURLAllowed == nil {
		return nil
	}
	var k struct {
		TokenURI string `json:"token_uri"`
	}
	if json.Unmarshal(key, &k) != nil || k.TokenURI == "" || k.TokenURI == GCPDefaultTokenURL || f.KeyTokenURLAllowed(k.TokenURI) {
		return nil
	}
	host := "an unparsable URL"
	if u, err := url.Parse(k.TokenURI); err == nil && u.Host != "" {
		host = u.Host
	}
	return errorf(Invalid, "Secret %s: the token_uri of %s names host %s, which is not Google's (%s) and not an allowed tenant endpoint host",
		f.Identity.KeysID, GCPKeyFile, host, GCPDefaultTokenURL)
}

type subjectSupplier struct{ id Identity }

func (s subjectSupplier) SubjectToken(ctx context.Context, _ externalaccount.SupplierOptions) (string, error) {
	return s.id.subjectToken(ctx)
}

var stsStatus = regexp.MustCompile(`status code (\d+): (?s)(.*)$`)

// classifyOAuth turns an OAuth2 or metadata error into a reason. The
// token endpoint's error code and description never carry a token.
func classifyOAuth(err error, op string, id Identity) error {
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		// The STS exchange reports "status code N: BODY" in plain text.
		if m := stsStatus.FindStringSubmatch(err.Error()); m != nil {
			status, _ := strconv.Atoi(m[1])
			re = &oauth2.RetrieveError{Response: &http.Response{StatusCode: status}, Body: []byte(m[2])}
		}
	}
	if re != nil {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		code, desc := re.ErrorCode, re.ErrorDescription
		if code == "" {
			// Some flows leave the body unparsed; an OAuth2 error body
			// holds a code and a description, never a token.
			var body struct {
				Error            string `json:"error"`
				ErrorDescription string `json:"error_description"`
			}
			if json.Unmarshal(re.Body, &body) == nil {
				code, desc = body.Error, body.ErrorDescription
			}
		}
		detail := strings.TrimSpace(code + " " + desc)
		if detail == "" {
			detail = http.StatusText(status)
		}
		msg := fmt.Sprintf("%s as %s: HTTP %d: %s", op, id.Describe(), status, detail)
		switch {
		case status == http.StatusTooManyRequests:
			return &Error{Reason: Throttled, Message: msg}
		case status == http.StatusUnauthorized || status == http.StatusForbidden,
			code == "invalid_grant", code == "invalid_client", code == "unauthorized_client", code == "access_denied":
			return &Error{Reason: AccessDenied, Message: msg}
		}
		return &Error{Reason: TokenRequestFailed, Message: msg}
	}
	var nd metadata.NotDefinedError
	if errors.As(err, &nd) {
		return errorf(IdentityNotFound, "%s: the metadata server has no service account (%v)", op, err)
	}
	var me *metadata.Error
	if errors.As(err, &me) {
		switch me.Code {
		case http.StatusTooManyRequests:
			return errorf(Throttled, "%s: metadata server: HTTP %d", op, me.Code)
		case http.StatusNotFound:
			return errorf(IdentityNotFound, "%s: the metadata server has no service account (HTTP 404)", op)
		case http.StatusForbidden, http.StatusUnauthorized:
			return errorf(AccessDenied, "%s: metadata server: HTTP %d", op, me.Code)
		}
		return errorf(TokenRequestFailed, "%s: metadata server: HTTP %d", op, me.Code)
	}
	return errorf(TokenRequestFailed, "%s as %s: %v", op, id.Describe(), err)
}
