package testregistry

import (
	"context"
	"fmt"
	goruntime "runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"regcred.dev/regcred/internal/testenv/fixtures"
)

// PushTestImage pushes a runnable test image (linux on this machine's
// architecture and arm64, in one index) as repoAndTag, with the registry's
// own user.
func (r *Registry) PushTestImage(ctx context.Context, repoAndTag string) (v1.Hash, error) {
	archs := []string{goruntime.GOARCH}
	if goruntime.GOARCH != "arm64" {
		archs = append(archs, "arm64")
	}
	idx, err := fixtures.Index(archs...)
	if err != nil {
		return v1.Hash{}, err
	}
	ref, err := name.ParseReference(r.Ref(repoAndTag))
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.WriteIndex(ref, idx, r.RemoteOptions(ctx, r.Auth())...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return idx.Digest()
}

// PushImage pushes img as repoAndTag, with the registry's own user.
func (r *Registry) PushImage(ctx context.Context, repoAndTag string, img v1.Image) (v1.Hash, error) {
	ref, err := name.ParseReference(r.Ref(repoAndTag))
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Write(ref, img, r.RemoteOptions(ctx, r.Auth())...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return img.Digest()
}
