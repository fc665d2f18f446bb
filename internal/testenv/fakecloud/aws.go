package fakecloud

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The ECR targets of the JSON 1.1 protocol.
const (
	ecrTarget       = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
	ecrPublicTarget = "SpencerFrontendService.GetAuthorizationToken"
)

// AWS is ECR, ECR Public and STS on one endpoint.
type AWS struct {
	*server
	Behavior
	Region  string
	Account string

	issuer Issuer
	roles  subjects

	mu   sync.Mutex
	keys map[string]awsKey
	oidc *OIDC
	// ecrTokens counts GetAuthorizationToken answers by access key, the
	// caller's identity.
	byKey map[string]int
}

type awsKey struct {
	secret, session string
	expires         time.Time
	revoked         bool
	// role is the assumed role a temporary key belongs to.
	role string
}

// StartAWS starts the fake; tokens last 12 hours unless SetLife says
// otherwise.
func StartAWS(issuer Issuer, region string) (*AWS, error) {
	a := &AWS{Region: region, Account: "123456789012", issuer: issuer, keys: map[string]awsKey{}, byKey: map[string]int{}}
	a.life = 12 * time.Hour
	s, err := startTLS(http.HandlerFunc(a.serve))
	if err != nil {
		return nil, err
	}
	a.server = s
	return a, nil
}

// NewAccessKey makes a long-lived IAM user key.
func (a *AWS) NewAccessKey() (id, secret string) {
	id, secret = randomToken("AKIA", 16), randomToken("", 40)
	a.mu.Lock()
	a.keys[id] = awsKey{secret: secret}
	a.mu.Unlock()
	return id, secret
}

// RevokeAccessKey makes AWS refuse a key from now on.
func (a *AWS) RevokeAccessKey(id string) {
	a.mu.Lock()
	k := a.keys[id]
	k.revoked = true
	a.keys[id] = k
	a.mu.Unlock()
}

// TrustOIDC makes STS accept ServiceAccount tokens of the issuer.
func (a *AWS) TrustOIDC(o *OIDC) { a.mu.Lock(); a.oidc = o; a.mu.Unlock() }

// AllowRole lets subject ("system:serviceaccount:NS:NAME") assume role.
func (a *AWS) AllowRole(roleARN, subject string) { a.roles.allow(roleARN, subject) }

// RoleARN is a role ARN in the fake's account.
func (a *AWS) RoleARN(name string) string { return "arn:aws:iam::" + a.Account + ":role/" + name }

// RegistryHost is the account's ECR registry host.
func (a *AWS) RegistryHost() string {
	return a.Account + ".dkr.ecr." + a.Region + ".amazonaws.com"
}

// TokensForKey counts the ECR tokens issued to the caller signing with
// access key id (a temporary key for assumed roles).
func (a *AWS) TokensForKey(id string) int { a.mu.Lock(); defer a.mu.Unlock(); return a.byKey[id] }

// TokensForRole counts the ECR tokens issued to sessions of role.
func (a *AWS) TokensForRole(role string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for id, c := range a.byKey {
		if a.keys[id].role == role {
			n += c
		}
	}
	return n
}

func (a *AWS) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	switch target := r.Header.Get("X-Amz-Target"); {
	case target == ecrTarget:
		a.ecr(w, r, body, "ecr", false)
	case target == ecrPublicTarget:
		a.ecr(w, r, body, "ecr-public", true)
	case strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"):
		a.sts(w, body)
	default:
		jsonError(w, http.StatusBadRequest, "UnknownOperationException", "unknown operation")
	}
}

// verify checks a SigV4 signature as AWS does and returns the access key.
func (a *AWS) verify(r *http.Request, body []byte, service string) (string, int, string, string) {
	auth := r.Header.Get("Authorization")
	const algo = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(auth, algo) {
		return "", http.StatusBadRequest, "MissingAuthenticationTokenException", "Missing Authentication Token"
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(auth, algo), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return "", http.StatusBadRequest, "IncompleteSignatureException", "bad credential scope"
	}
	keyID, region, svc := scope[0], scope[2], scope[3]
	if region != a.Region && !(service == "ecr-public" && region == "us-east-1") {
		return "", http.StatusBadRequest, "InvalidSignatureException", "credential scope names region " + region
	}
	if svc != service {
		return "", http.StatusBadRequest, "InvalidSignatureException", "credential scope names service " + svc
	}
	a.mu.Lock()
	key, ok := a.keys[keyID]
	a.mu.Unlock()
	if !ok || key.revoked {
		return "", http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid."
	}
	if !key.expires.IsZero() && time.Now().After(key.expires) {
		return "", http.StatusBadRequest, "ExpiredTokenException", "The security token included in the request is expired"
	}
	if key.session != "" && r.Header.Get("X-Amz-Security-Token") != key.session {
		return "", http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid."
	}
	signedAt, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || time.Since(signedAt).Abs() > 5*time.Minute {
		return "", http.StatusBadRequest, "InvalidSignatureException", "Signature expired or X-Amz-Date missing"
	}
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])

	again, _ := http.NewRequest(r.Method, "https://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	again.Host = r.Host
	again.ContentLength = 0
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		switch h {
		case "host":
		case "content-length":
			again.ContentLength = int64(len(body))
		default:
			again.Header[textproto.CanonicalMIMEHeaderKey(h)] = r.Header.Values(h)
		}
	}
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: key.secret, SessionToken: key.session}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, again, payloadHash, service, region, signedAt); err != nil {
		return "", http.StatusInternalServerError, "InternalFailure", err.Error()
	}
	if again.Header.Get("Authorization") != auth {
		return "", http.StatusBadRequest, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided."
	}
	return keyID, 0, "", ""
}

func (a *AWS) ecr(w http.ResponseWriter, r *http.Request, body []byte, service string, public bool) {
	keyID, status, code, msg := a.verify(r, body, service)
	if status != 0 {
		jsonError(w, status, code, msg)
		return
	}
	if !json.Valid(body) {
		jsonError(w, http.StatusBadRequest, "SerializationException", "body is not JSON")
		return
	}
	life, skew, throttled, fail := a.next()
	switch {
	case throttled:
		jsonError(w, http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
		return
	case fail == http.StatusForbidden:
		jsonError(w, http.StatusBadRequest, "AccessDeniedException", "User is not authorized to perform: ecr:GetAuthorizationToken")
		return
	case fail != 0:
		jsonError(w, fail, "ServerException", "internal error")
		return
	}
	password := randomToken("ecr.", 48)
	expires := time.Now().Add(life)
	a.issuer.AllowTemporary("AWS", password, expires)
	a.mu.Lock()
	a.byKey[keyID]++
	a.mu.Unlock()
	data := map[string]any{
		"authorizationToken": base64.StdEncoding.EncodeToString([]byte("AWS:" + password)),
		"expiresAt":          float64(expires.Add(skew).UnixMilli()) / 1000,
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if public {
		_ = json.NewEncoder(w).Encode(map[string]any{"authorizationData": data})
		return
	}
	data["proxyEndpoint"] = "https://" + a.RegistryHost()
	_ = json.NewEncoder(w).Encode(map[string]any{"authorizationData": []any{data}})
}

func jsonError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

type stsError struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

func xmlError(w http.ResponseWriter, status int, code, msg string) {
	var e stsError
	e.Error.Type, e.Error.Code, e.Error.Message, e.RequestID = "Sender", code, msg, randomToken("", 12)
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_ = xml.NewEncoder(w).Encode(e)
}

// sts answers AssumeRoleWithWebIdentity.
func (a *AWS) sts(w http.ResponseWriter, body []byte) {
	form, err := parseForm(body)
	if err != nil || form.Get("Action") != "AssumeRoleWithWebIdentity" || form.Get("Version") != "2011-06-15" {
		xmlError(w, http.StatusBadRequest, "InvalidAction", "unsupported action")
		return
	}
	role := form.Get("RoleArn")
	a.mu.Lock()
	oidc := a.oidc
	a.mu.Unlock()
	subject, err := oidc.Verify(form.Get("WebIdentityToken"), "sts.amazonaws.com")
	if err != nil {
		xmlError(w, http.StatusBadRequest, "InvalidIdentityToken", "the web identity token is not valid: "+err.Error())
		return
	}
	if !a.roles.allowed(role, subject) {
		xmlError(w, http.StatusForbidden, "AccessDenied", fmt.Sprintf("Not authorized to perform sts:AssumeRoleWithWebIdentity (%s)", subject))
		return
	}
	id, secret, session := randomToken("ASIA", 16), randomToken("", 40), randomToken("", 64)
	expires := time.Now().Add(time.Hour)
	a.mu.Lock()
	a.keys[id] = awsKey{secret: secret, session: session, expires: expires, role: role}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult>`+
		`<SubjectFromWebIdentityToken>%s</SubjectFromWebIdentityToken><AssumedRoleUser><Arn>%s/regcred</Arn><AssumedRoleId>AROA:regcred</AssumedRoleId></AssumedRoleUser>`+
		`<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken><Expiration>%s</Expiration></Credentials>`+
		`<Audience>sts.amazonaws.com</Audience></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
		subject, role, id, secret, session, expires.UTC().Format(time.RFC3339), randomToken("", 12))
}
