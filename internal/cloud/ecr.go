package cloud

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecrpublic"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"regcred.dev/regcred/internal/egress"
)

// ECR public tokens are issued in one region only.
const ecrPublicRegion = "us-east-1"

// Keys of an AWS keys Secret, named as in ~/.aws/credentials.
const (
	AWSAccessKeyID     = "aws_access_key_id"
	AWSSecretAccessKey = "aws_secret_access_key"
	AWSSessionToken    = "aws_session_token"
)

// ECR gets Amazon ECR authorization tokens.
type ECR struct {
	Region      string
	RegistryIDs []string
	Public      bool
	// Endpoint overrides the ECR API endpoint.
	Endpoint string
	Identity Identity
	Env      Env
}

var _ Fetcher = (*ECR)(nil)

// Key implements Fetcher: a token is per region (and endpoint) and
// identity.
func (f *ECR) Key() string {
	return fmt.Sprintf("ecr|%s|public=%t|%s|%s|%s", f.region(), f.Public, f.Endpoint, sortedJoin(f.RegistryIDs), f.Identity.id())
}

// Kind implements Fetcher.
func (f *ECR) Kind() string { return KindECR }

func (f *ECR) region() string {
	if f.Public {
		return ecrPublicRegion
	}
	return f.Region
}

// Fetch implements Fetcher.
func (f *ECR) Fetch(ctx context.Context) (*Token, error) {
	cfg, err := f.awsConfig(ctx)
	if err != nil {
		return nil, err
	}
	received := f.Env.now()
	var (
		encoded  string
		expires  *time.Time
		registry = "public.ecr.aws"
	)
	if f.Public {
		out, err := ecrpublic.NewFromConfig(cfg, func(o *ecrpublic.Options) {
			if f.Endpoint != "" {
				o.BaseEndpoint = aws.String(f.Endpoint)
			}
		}).GetAuthorizationToken(ctx, &ecrpublic.GetAuthorizationTokenInput{})
		if err != nil {
			return nil, classifyAWS(err, "ECR Public GetAuthorizationToken", f.Identity)
		}
		if out.AuthorizationData == nil {
			return nil, errorf(TokenRequestFailed, "ECR Public returned no authorization data")
		}
		encoded, expires = aws.ToString(out.AuthorizationData.AuthorizationToken), out.AuthorizationData.ExpiresAt
	} else {
		in := &ecr.GetAuthorizationTokenInput{}
		if len(f.RegistryIDs) > 0 {
			in.RegistryIds = f.RegistryIDs
		}
		out, err := ecr.NewFromConfig(cfg, func(o *ecr.Options) {
			if f.Endpoint != "" {
				o.BaseEndpoint = aws.String(f.Endpoint)
			}
		}).GetAuthorizationToken(ctx, in)
		if err != nil {
			return nil, classifyAWS(err, "ECR GetAuthorizationToken", f.Identity)
		}
		if len(out.AuthorizationData) == 0 {
			return nil, errorf(TokenRequestFailed, "ECR returned no authorization data")
		}
		// Every entry carries the same token: it is per identity and
		// region, whichever registries were named.
		d := out.AuthorizationData[0]
		encoded, expires = aws.ToString(d.AuthorizationToken), d.ExpiresAt
		registry = strings.TrimPrefix(aws.ToString(d.ProxyEndpoint), "https://")
	}
	user, pass, err := decodeBasicToken(encoded)
	if err != nil {
		return nil, err
	}
	if expires == nil {
		return nil, errorf(TokenRequestFailed, "ECR returned a token without an expiry")
	}
	return &Token{Auth: Auth{Username: user, Password: pass}, ReceivedAt: received, ExpiresAt: *expires, Registry: registry}, nil
}

func (f *ECR) awsConfig(ctx context.Context) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(f.region()),
		config.WithHTTPClient(awsHTTPClient(f.Env)),
		// The cache retries with its own backoff; SDK retries inside a
		// request would multiply requests to a throttling cloud.
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
	}
	id := f.Identity
	if id.Keys != nil {
		data, err := id.keys(ctx, AWSAccessKeyID, AWSSecretAccessKey)
		if err != nil {
			return aws.Config{}, err
		}
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(
			strings.TrimSpace(string(data[AWSAccessKeyID])), strings.TrimSpace(string(data[AWSSecretAccessKey])), strings.TrimSpace(string(data[AWSSessionToken])))))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, errorf(Invalid, "AWS configuration: %v", err)
	}
	cfg.HTTPClient = cappedAWS(cfg.HTTPClient)
	if w := id.WebIdentity; w != nil {
		if w.RoleARN == "" {
			return aws.Config{}, errorf(Invalid, "an AWS web identity needs roleARN")
		}
		retriever := identityTokenFunc(func() ([]byte, error) {
			tok, err := id.subjectToken(ctx)
			return []byte(tok), err
		})
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewWebIdentityRoleProvider(sts.NewFromConfig(cfg), w.RoleARN, retriever,
			func(o *stscreds.WebIdentityRoleOptions) { o.RoleSessionName = "regcred" }))
	}
	return cfg, nil
}

type identityTokenFunc func() ([]byte, error)

func (f identityTokenFunc) GetIdentityToken() ([]byte, error) { return f() }

// awsHTTPClient is the SDK's buildable client, so that AWS_CA_BUNDLE can
// still add its roots, with the TLS settings, dialer (egress's guard) and
// timeout of env's client.
func awsHTTPClient(env Env) aws.HTTPClient {
	c := awshttp.NewBuildableClient()
	if env.HTTPClient == nil {
		return c
	}
	if env.HTTPClient.Timeout > 0 {
		c = c.WithTimeout(env.HTTPClient.Timeout)
	}
	if tr, ok := egress.Base(env.HTTPClient.Transport); ok {
		tls, dial, proxy := tr.TLSClientConfig, tr.DialContext, tr.Proxy
		if tls != nil {
			tls = tls.Clone()
		}
		c = c.WithTransportOptions(func(t *http.Transport) {
			if tls != nil {
				t.TLSClientConfig = tls
			}
			if dial != nil {
				t.DialContext = dial
				// A guarded dialer comes without a proxy (egress.Transport),
				// and the SDK's own proxy would route around it.
				t.Proxy = proxy
			}
		})
	}
	return c
}

// cappedAWS is the SDK's client as loaded (roots of AWS_CA_BUNDLE
// included) behind egress's cap: an AWS endpoint can be the tenant's
// (ecr.endpoint), and the SDK reads whole answers.
func cappedAWS(c aws.HTTPClient) aws.HTTPClient {
	b, ok := c.(*awshttp.BuildableClient)
	if !ok {
		return c
	}
	p := egress.Policy{}
	return &http.Client{Transport: egress.Cap(b.GetTransport()), Timeout: b.GetTimeout(), CheckRedirect: p.CheckRedirect}
}

// decodeBasicToken splits a base64 "user:password" token.
func decodeBasicToken(encoded string) (string, string, error) {
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return "", "", errorf(TokenRequestFailed, "the authorization token is not base64")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" || pass == "" {
		return "", "", errorf(TokenRequestFailed, "the authorization token is not user:password")
	}
	return user, pass, nil
}

// classifyAWS turns an SDK error into a reason, keeping the service's
// error code and message (which never carry the token or keys).
func classifyAWS(err error, op string, id Identity) error {
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		msg := fmt.Sprintf("%s as %s: %s: %s", op, id.Describe(), code, apiErr.ErrorMessage())
		switch code {
		case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded":
			return &Error{Reason: Throttled, Message: msg}
		case "AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "InvalidClientTokenId",
			"SignatureDoesNotMatch", "InvalidSignatureException", "ExpiredToken", "ExpiredTokenException",
			"InvalidIdentityToken", "IDPRejectedClaim", "IncompleteSignature", "MissingAuthenticationToken":
			return &Error{Reason: AccessDenied, Message: msg}
		}
		return &Error{Reason: TokenRequestFailed, Message: msg}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusTooManyRequests {
		return errorf(Throttled, "%s as %s: throttled (HTTP 429)", op, id.Describe())
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return errorf(TokenRequestFailed, "%s as %s: cannot reach AWS: %v", op, id.Describe(), unwrapAll(err))
	}
	if strings.Contains(err.Error(), "failed to retrieve credentials") || strings.Contains(err.Error(), "no EC2 IMDS role found") {
		return errorf(IdentityNotFound, "%s: no AWS credentials found for %s: %v", op, id.Describe(), unwrapAll(err))
	}
	return errorf(TokenRequestFailed, "%s as %s: %v", op, id.Describe(), unwrapAll(err))
}

// unwrapAll shortens an SDK error chain to its innermost message.
func unwrapAll(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
