package cloudsrc

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/credential"
)

// apiServerAudiences are the audiences API servers accept by default
// (their issuer, the in-cluster Service names): a token for one of them
// would let whoever receives it act as the ServiceAccount in the cluster.
var apiServerAudiences = []string{
	"", "api",
	"https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local",
	"kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
}

// serviceAccountPrefix starts the user name of a ServiceAccount.
const serviceAccountPrefix = "system:serviceaccount:"

// mint asks the API server for a ServiceAccount token for audience, once
// the ServiceAccount has opted in to that audience, and hands it out only
// if the API server itself would not accept it. A credential names the
// ServiceAccount and the URL the token goes to, so without these checks
// regcred would mint, for whoever writes a RegistryCredential, tokens
// they have no right to (the confused deputy).
func (b *Builder) mint(ctx context.Context, namespace, name, audience string) (string, error) {
	sa := namespace + "/" + name
	if IsAPIServerAudience(audience) {
		return "", denied("audience %q is one the API server accepts: regcred mints no token for it", audience)
	}
	if err := b.notSelf(ctx, namespace, name); err != nil {
		return "", err
	}
	if err := b.optedIn(ctx, namespace, name, audience); err != nil {
		return "", err
	}
	tok, err := b.tokenRequest(ctx, namespace, name, audience)
	if err != nil {
		return "", err
	}
	accepted, err := APIServerAccepts(ctx, b.Client, tok)
	if err != nil {
		return "", &cloud.Error{Reason: cloud.TokenRequestFailed, Message: fmt.Sprintf("check the token of ServiceAccount %s with a TokenReview: %v", sa, err)}
	}
	if accepted {
		// The token is dropped here: it never leaves the manager.
		return "", denied("audience %q is one the API server accepts: regcred mints no token for it (ServiceAccount %s)", audience, sa)
	}
	return tok, nil
}

func denied(format string, args ...any) *cloud.Error {
	return &cloud.Error{Reason: cloud.AccessDenied, Message: fmt.Sprintf(format, args...)}
}

// IsAPIServerAudience reports whether audience is one API servers accept
// by default.
func IsAPIServerAudience(audience string) bool {
	return slices.Contains(apiServerAudiences, strings.TrimSpace(audience))
}

// Audiences parses the opt-in annotation's value: a comma-separated list.
func Audiences(value string) []string {
	var out []string
	for _, a := range strings.Split(value, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// optedIn reads the ServiceAccount fresh from the API server (a cached
// copy could be older than a withdrawn opt-in) and checks its annotation.
func (b *Builder) optedIn(ctx context.Context, namespace, name, audience string) error {
	var sa corev1.ServiceAccount
	if err := b.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &sa); err != nil {
		if apierrors.IsNotFound(err) {
			return &cloud.Error{Reason: cloud.IdentityNotFound, Message: fmt.Sprintf("ServiceAccount %s/%s not found", namespace, name)}
		}
		return &cloud.Error{Reason: cloud.TokenRequestFailed, Message: fmt.Sprintf("read ServiceAccount %s/%s: %v", namespace, name, err)}
	}
	if !slices.Contains(Audiences(sa.Annotations[credential.AnnotationTokenAudiences]), audience) {
		return denied("ServiceAccount %s/%s has not opted in to tokens for audience %s: annotate it %s=%s",
			namespace, name, audience, credential.AnnotationTokenAudiences, audience)
	}
	return nil
}

// notSelf refuses the manager's own ServiceAccount: its token would carry
// the manager's rights, whoever asked.
func (b *Builder) notSelf(ctx context.Context, namespace, name string) error {
	self, err := b.self(ctx)
	if err != nil {
		return &cloud.Error{Reason: cloud.TokenRequestFailed, Message: fmt.Sprintf("learn the manager's own identity: %v", err)}
	}
	if self == serviceAccountPrefix+namespace+":"+name {
		return denied("ServiceAccount %s/%s is regcred's own: regcred mints no token for it", namespace, name)
	}
	return nil
}

// self returns the user the manager runs as, asking the API server once.
func (b *Builder) self(ctx context.Context) (string, error) {
	b.selfMu.Lock()
	defer b.selfMu.Unlock()
	if b.selfName != "" {
		return b.selfName, nil
	}
	who := b.Self
	if who == nil {
		who = b.selfSubjectReview
	}
	name, err := who(ctx)
	if err != nil {
		return "", err
	}
	// An error is not remembered: the next mint asks again.
	b.selfName = name
	return name, nil
}

func (b *Builder) selfSubjectReview(ctx context.Context) (string, error) {
	r := &authenticationv1.SelfSubjectReview{}
	if err := b.Client.Create(ctx, r); err != nil {
		return "", err
	}
	if r.Status.UserInfo.Username == "" {
		return "", fmt.Errorf("the SelfSubjectReview names no user")
	}
	return r.Status.UserInfo.Username, nil
}

func (b *Builder) tokenRequest(ctx context.Context, namespace, name, audience string) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](serviceAccountTokenSeconds)}}
	if err := b.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
		if apierrors.IsNotFound(err) {
			return "", &cloud.Error{Reason: cloud.IdentityNotFound, Message: fmt.Sprintf("ServiceAccount %s/%s not found", namespace, name)}
		}
		if apierrors.IsForbidden(err) {
			return "", denied("regcred may not mint tokens for ServiceAccount %s/%s", namespace, name)
		}
		return "", &cloud.Error{Reason: cloud.TokenRequestFailed, Message: fmt.Sprintf("mint a token for ServiceAccount %s/%s: %v", namespace, name, err)}
	}
	if tr.Status.Token == "" {
		return "", &cloud.Error{Reason: cloud.TokenRequestFailed, Message: fmt.Sprintf("the API server minted no token for ServiceAccount %s/%s", namespace, name)}
	}
	return tr.Status.Token, nil
}

// APIServerAccepts reports whether the API server authenticates token
// for its own audiences (a TokenReview with none named), which any
// --api-audiences setting is covered by, not only the well-known names.
func APIServerAccepts(ctx context.Context, c client.Client, token string) (bool, error) {
	r := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}
	if err := c.Create(ctx, r); err != nil {
		return false, err
	}
	return r.Status.Authenticated, nil
}
