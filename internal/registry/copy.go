package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"regcred.dev/regcred/internal/keyring"
)

// Keychain resolves credentials for go-containerregistry from a regcred
// keyring, choosing as the kubelet would: the first matching credential,
// anonymous when none matches.
type Keychain struct {
	Keyrings []*keyring.Keyring
	// Overrides take precedence for a registry host (as written in image
	// references, e.g. "harbor.internal:8443").
	Overrides map[string]authn.Authenticator
}

// Resolve implements authn.Keychain.
func (k *Keychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if a, ok := k.Overrides[r.RegistryStr()]; ok {
		return a, nil
	}
	repo := r.String()
	if named, err := keyring.ParseImage(repo); err == nil {
		repo = named.Name()
	}
	t := keyring.ParseTarget(repo)
	for _, kr := range k.Keyrings {
		if creds := kr.LookupTarget(t); len(creds) > 0 {
			c := creds[0]
			return Credential{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken}.authenticator(), nil
		}
	}
	return authn.Anonymous, nil
}

// CopyResult says what Copy did.
type CopyResult struct {
	Digest string
	// Skipped is true when the destination already had the manifest, and
	// the tag pointed at it.
	Skipped bool
	// Platforms is the number of platform images of an index (0 for a
	// single image).
	Platforms int
}

// Copy copies src to dst by digest, with every platform of an index. Blobs
// and manifests the destination already has are not uploaded again, so an
// interrupted copy resumes where it stopped.
func Copy(ctx context.Context, src, dst string, opts ...Option) (_ *CopyResult, rerr error) {
	o := newOptions(opts)
	if o.keychain == nil {
		o.keychain = authn.NewMultiKeychain() // anonymous
	}
	handedOver := false // go-containerregistry closes the channel after a write
	defer func() {
		if o.progress != nil && !handedOver {
			close(o.progress)
		}
	}()
	srcRef, err := name.ParseReference(src)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", src, err)
	}
	dstRef, err := name.ParseReference(dst)
	if err != nil {
		return nil, fmt.Errorf("destination %q: %w", dst, err)
	}
	ropts := o.remoteOptions(ctx)
	desc, err := remote.Get(srcRef, ropts...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", src, err)
	}
	res := &CopyResult{Digest: desc.Digest.String()}

	// Already there: the destination has this digest under this name.
	if existing, err := remote.Head(dstRef, ropts...); err == nil && existing.Digest == desc.Digest {
		res.Skipped = true
		if desc.MediaType.IsIndex() {
			if idx, err := desc.ImageIndex(); err == nil {
				if m, err := idx.IndexManifest(); err == nil {
					res.Platforms = len(m.Manifests)
				}
			}
		}
		return res, nil
	}

	writeOpts := ropts
	if o.progress != nil {
		writeOpts = append(append([]remote.Option(nil), ropts...), remote.WithProgress(o.progress))
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		res.Platforms = len(m.Manifests)
		handedOver = true
		if err := remote.WriteIndex(dstRef, idx, writeOpts...); err != nil {
			return nil, fmt.Errorf("write %s: %w", dst, err)
		}
		return res, nil
	}
	img, err := desc.Image()
	if err != nil {
		return nil, err
	}
	handedOver = true
	if err := remote.Write(dstRef, img, writeOpts...); err != nil {
		return nil, fmt.Errorf("write %s: %w", dst, err)
	}
	return res, nil
}

func (o *options) remoteOptions(ctx context.Context) []remote.Option {
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(o.keychain)}
	if o.transport != nil {
		ropts = append(ropts, remote.WithTransport(o.transport))
	} else if o.rootCAs != nil {
		ropts = append(ropts, remote.WithTransport(o.baseTransport()))
	}
	if o.jobs > 0 {
		ropts = append(ropts, remote.WithJobs(o.jobs))
	}
	return ropts
}

// PushIndex writes an image index built here (regcred's own image, say) as
// dst, with the credentials of the keychain option; blobs the registry has
// are not uploaded again. It returns the index's digest.
func PushIndex(ctx context.Context, idx v1.ImageIndex, dst string, opts ...Option) (v1.Hash, error) {
	o := newOptions(opts)
	if o.keychain == nil {
		o.keychain = authn.NewMultiKeychain()
	}
	ref, err := name.ParseReference(dst)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("destination %q: %w", dst, err)
	}
	if err := remote.WriteIndex(ref, idx, o.remoteOptions(ctx)...); err != nil {
		return v1.Hash{}, fmt.Errorf("write %s: %w", dst, err)
	}
	return idx.Digest()
}

// Classify names the reason of a registry operation's error with the same
// closed set Check uses.
func Classify(ctx context.Context, err error) Result {
	res := classify(ctx, err, false)
	if res.Hint == "" {
		res.Hint = res.Reason.Hint()
	}
	return res
}

// Transport is a copy of http.DefaultTransport that trusts rootCAs (the
// system's when nil) and speaks TLS 1.2 or later.
func Transport(rootCAs *x509.CertPool) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: rootCAs}
	return tr
}

// CAPool is the system's CA pool plus the PEM certificates of files.
func CAPool(files []string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", f)
		}
	}
	return pool, nil
}
