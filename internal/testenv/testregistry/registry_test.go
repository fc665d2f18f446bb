package testregistry_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testregistry"
	"regcred.dev/regcred/internal/testenv/testsuite"
)

var suite = testsuite.New()

func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }

func TestRegistryAuth(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	for _, mode := range []testregistry.AuthMode{testregistry.Basic, testregistry.Token} {
		t.Run(string(mode), func(t *testing.T) {
			reg := suite.Registry(t, mode)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			digest, err := reg.PushRandomImage(ctx, "team/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.ParseReference(reg.Ref("team/app:v1"))
			if err != nil {
				t.Fatal(err)
			}

			img, err := remote.Image(ref, reg.RemoteOptions(ctx, reg.Auth())...)
			if err != nil {
				t.Fatalf("pull with valid credentials: %v", err)
			}
			got, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if got != digest {
				t.Errorf("pulled digest %s, pushed %s", got, digest)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range layers {
				rc, err := l.Compressed()
				if err != nil {
					t.Fatalf("fetch layer: %v", err)
				}
				_ = rc.Close()
			}

			for _, tc := range []struct {
				name string
				auth authn.Authenticator
			}{
				{"anonymous", authn.Anonymous},
				{"wrong password", reg.WrongPasswordAuth()},
			} {
				_, err := remote.Image(ref, reg.RemoteOptions(ctx, tc.auth)...)
				var terr *transport.Error
				if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s pull: err = %v, want HTTP 401", tc.name, err)
				}
			}
		})
	}
}

func TestTokenRegistryScopesAccess(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	reg, err := testregistry.Start(testregistry.Token, testregistry.WithUser(testregistry.User{
		Name: "reader", Password: "reader-pass", Repositories: []string{"public/*"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, repo := range []string{"public/app:v1", "private/app:v1"} {
		if _, err := reg.PushRandomImage(ctx, repo); err != nil {
			t.Fatal(err)
		}
	}
	reader := &authn.Basic{Username: "reader", Password: "reader-pass"}
	if _, err := remote.Head(mustRef(t, reg.Ref("public/app:v1")), reg.RemoteOptions(ctx, reader)...); err != nil {
		t.Errorf("reader on public/app: %v", err)
	}
	_, err = remote.Head(mustRef(t, reg.Ref("private/app:v1")), reg.RemoteOptions(ctx, reader)...)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("reader on private/app: err = %v, want HTTP 401 (token without that scope)", err)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
