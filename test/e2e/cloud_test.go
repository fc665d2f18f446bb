package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/fakecloud"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// TestECRTokenOutlivesItsFirstToken: a ClusterRegistryCredential with an
// ECR source, served by a fake ECR whose tokens live 20 seconds, against a
// token-auth registry that refuses expired tokens. The kubelet runs a Pod
// with the first token, and, after that token has expired, pulls again
// with what regcred refreshed in place.
func TestECRTokenOutlivesItsFirstToken(t *testing.T) {
	e := withRegcred(t)
	reg := e.ownRegistry(t, testregistry.Token)
	aws, source, id := e.fakeECR(t, reg, "e2e-aws-keys")
	const life = 20 * time.Second
	aws.SetLife(life)
	sel := labels("e2e", "ecr")
	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "e2e-ecr"}}
	cred.Spec.Registries = []string{reg.Host}
	cred.Spec.Source.ECR = source
	cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: sel}
	if err := e.c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.deleteAndWait(t, cred) })

	ns := e.namespace(t, "ecr", sel)
	first := pod(ns, "first", reg.Ref("app:1"))
	if err := e.c.Create(bg, first); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, ns, "first")
	var managed corev1.Secret
	if err := e.c.Get(bg, client.ObjectKey{Namespace: ns, Name: "regcred-e2e-ecr"}, &managed); err != nil {
		t.Fatal(err)
	}
	firstToken := loginFor(t, managed.Data[corev1.DockerConfigJsonKey], reg.Host)

	// The registry now refuses the first token: it has expired.
	ref, err := name.ParseReference(reg.Ref("app:1"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*life+pullWait, func(ctx context.Context) error {
		_, err := remote.Head(ref, remote.WithContext(ctx), remote.WithTransport(reg.Transport()), remote.WithAuth(&firstToken))
		if err == nil {
			return fmt.Errorf("the first token still works")
		}
		return nil
	})
	var now corev1.Secret
	if err := e.c.Get(bg, client.ObjectKey{Namespace: ns, Name: "regcred-e2e-ecr"}, &now); err != nil {
		t.Fatal(err)
	}
	if now.UID != managed.UID {
		t.Fatalf("the managed Secret was replaced (UID %s, was %s), not updated in place", now.UID, managed.UID)
	}

	again := pod(ns, "after-expiry", reg.Ref("app:1"))
	again.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
	if err := e.c.Create(bg, again); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, ns, "after-expiry")
	if n := aws.TokensForKey(id); n < 2 {
		t.Errorf("%d ECR tokens issued, want a refresh", n)
	}
}

func loginFor(t *testing.T, data []byte, host string) authn.Basic {
	t.Helper()
	cfg, err := dockercfg.ParseDockerConfigJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Auths[host]
	return authn.Basic{Username: e.Username, Password: e.Password}
}

// fakeECR starts a fake AWS in eu-west-1 whose ECR issues tokens for reg,
// and writes an access key for it in regcred's namespace (Secret
// keyName): the ECR source a ClusterRegistryCredential names.
func (e env) fakeECR(t *testing.T, reg fakecloud.Issuer, keyName string) (aws *fakecloud.AWS, source *v1alpha1.ECRSource, keyID string) {
	t.Helper()
	aws, err := fakecloud.StartAWS(reg, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(aws.Close)
	cloudTrust.Add(aws.CA.CertPEM)
	id, secret := aws.NewAccessKey()
	keys := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNS, Name: keyName},
		Data: map[string][]byte{cloud.AWSAccessKeyID: []byte(id), cloud.AWSSecretAccessKey: []byte(secret)}}
	e.create(t, keys)
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), keys) })
	return aws, &v1alpha1.ECRSource{Region: "eu-west-1", Endpoint: aws.URL,
		Identity: v1alpha1.CloudIdentity{SecretRef: &v1alpha1.SecretReference{Name: keyName}}}, id
}
