package secretref

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/source"
)

// TestResolveKeepsOnlyCoveredEntries: logins in the source for registries
// the credential is not for are not passed on; a source with none for its
// registries is invalid rather than an empty copy.
func TestResolveKeepsOnlyCoveredEntries(t *testing.T) {
	data, _ := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{
		"harbor.example.com": {Username: "robot", Password: "hp"},
		"other.example.com":  {Username: "someone", Password: "op"},
	}}).MarshalDockerConfigJSON()
	cl := fake.NewClientBuilder().WithObjects(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "src"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}).Build()
	p := &Provider{Reader: cl, Name: "src"}

	res, err := p.Resolve(context.Background(), source.Request{Namespace: "ns", Registries: []string{"harbor.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if keys := res.Config.Keys(); len(keys) != 1 || keys[0] != "harbor.example.com" {
		t.Errorf("entries %v, want [harbor.example.com]", keys)
	}

	_, err = p.Resolve(context.Background(), source.Request{Namespace: "ns", Registries: []string{"ghcr.io"}})
	var serr *source.Error
	if !errors.As(err, &serr) || serr.Reason != source.Invalid || !strings.Contains(serr.Message, "none of its 2 entries") {
		t.Errorf("source without a covered entry: %v", err)
	}
}
