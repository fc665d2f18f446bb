package kubeletmsg

import (
	"slices"
	"strings"
	"testing"
)

// Messages the kubelet (v1.37 on containerd 1.6, then on containerd 2.4)
// wrote in the end-to-end tests, and ones of other registries and
// runtimes.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want Cause
	}{
		{`Failed to pull image "127.0.0.1:39611/app:1": failed to pull and unpack image "127.0.0.1:39611/app:1": failed to resolve reference "127.0.0.1:39611/app:1": pulling from host 127.0.0.1:39611 failed with status code [manifests 1]: 401 Unauthorized`, Unauthorized},
		{`Failed to pull image "127.0.0.1:33703/app:1": failed to pull and unpack image "127.0.0.1:33703/app:1": failed to resolve reference "127.0.0.1:33703/app:1": failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized`, Unauthorized},
		{`Failed to pull image "r/app:1": rpc error: code = Unknown desc = failed to pull and unpack image "r/app:1": failed to resolve reference "r/app:1": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed`, Unauthorized},
		// containerd 2.4: no credential at all says no status code.
		{`Failed to pull image "shared.registry/app:1": failed to pull and unpack image "shared.registry/app:1": failed to resolve image: pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials`, Unauthorized},
		{`Failed to pull image "shared.registry/app:1": failed to pull and unpack image "shared.registry/app:1": failed to resolve image: unexpected status from HEAD request to https://shared.registry/v2/app/manifests/1: 401 Unauthorized`, Unauthorized},
		{`Failed to pull image "revoked0.registry/app:1": failed to pull and unpack image "revoked0.registry/app:1": failed to resolve image: failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://revoked0.registry/token?scope=repository%3Aapp%3Apull&service=regcred-test-registry: 401 Unauthorized`, Unauthorized},
		{`Failed to pull image "shared.registry/model:missing": rpc error: code = NotFound desc = failed to pull and unpack image "shared.registry/model:missing": failed to resolve image: shared.registry/model:missing: not found`, NotFound},
		{`Failed to pull image "ratelimited0.registry/ratelimited/app:1": failed to pull and unpack image "ratelimited0.registry/ratelimited/app:1": failed to resolve image: unexpected status from HEAD request to https://ratelimited0.registry/v2/ratelimited/app/manifests/1: 429 Too Many Requests`, RateLimited},
		{`Failed to pull image "tls0.registry/app:1": failed to pull and unpack image "tls0.registry/app:1": failed to resolve image: failed to do request: Head "https://tls0.registry/v2/app/manifests/1": tls: failed to verify certificate: x509: certificate signed by unknown authority`, TLS},
		{`Failed to pull image "closed.registry/app:1": failed to pull and unpack image "closed.registry/app:1": failed to resolve image: failed to do request: Head "https://closed.registry/v2/app/manifests/1": dial tcp closed.registry: connect: connection refused`, Connection},
		{`Failed to pull image "ghcr.io/acme/api:1": failed to resolve reference "ghcr.io/acme/api:1": unexpected status from HEAD request to https://ghcr.io/v2/acme/api/manifests/1: 403 Forbidden`, Denied},
		{`Failed to pull image "h/a:1": Error response from daemon: pull access denied for h/a, repository does not exist or may require 'docker login': denied: requested access to the resource is denied`, Denied},
		{`Failed to pull image "127.0.0.1:39611/model:missing": failed to pull and unpack image "127.0.0.1:39611/model:missing": failed to resolve reference "127.0.0.1:39611/model:missing": 127.0.0.1:39611/model:missing: not found`, NotFound},
		{`Failed to pull image "127.0.0.1:42927/ratelimited/app:1": failed to pull and unpack image "127.0.0.1:42927/ratelimited/app:1": failed to resolve reference "127.0.0.1:42927/ratelimited/app:1": pulling from host 127.0.0.1:42927 failed with status code [manifests 1]: 429 Too Many Requests`, RateLimited},
		{`Failed to pull image "docker.io/library/nginx:1": failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/nginx/manifests/sha256:x: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit.`, RateLimited},
		{`Failed to pull image "h:5000/a:1": failed to do request: Head "https://h:5000/v2/a/manifests/1": tls: failed to verify certificate: x509: certificate signed by unknown authority`, TLS},
		{`Failed to pull image "h:5000/a:1": failed to do request: Head "https://h:5000/v2/a/manifests/1": http: server gave HTTP response to HTTPS client`, TLS},
		{`Failed to pull image "nope.example/a:1": failed to do request: Head "https://nope.example/v2/a/manifests/1": dial tcp: lookup nope.example on 10.96.0.10:53: no such host`, DNS},
		{`Failed to pull image "127.0.0.1:44945/app:1": failed to do request: Head "http://127.0.0.1:44945/v2/app/manifests/1": dial tcp 127.0.0.1:44945: connect: connection refused`, Connection},
		{`Failed to pull image "10.0.0.9/a:1": failed to do request: Head "https://10.0.0.9/v2/a/manifests/1": dial tcp 10.0.0.9:443: i/o timeout`, Timeout},
		{`Failed to pull image "r/a:1": rpc error: code = DeadlineExceeded desc = context deadline exceeded`, Timeout},
		{`Failed to apply default image tag "127.0.0.1:39611/App:1": couldn't parse image name "127.0.0.1:39611/App:1": invalid reference format: repository name (App) must be lowercase`, InvalidImageName},
		{`Container image "a:1" is not present with pull policy of Never`, NeverPull},
		{`Unable to retrieve some image pull secrets (gone, other); attempting to pull the image may not succeed.`, MissingSecret},
		{`illegal base64 data at input byte 0`, MalformedSecret},
		{`Error: ErrImagePull`, Other},
		{``, Other},
	} {
		if got := Classify(tc.msg); got != tc.want {
			t.Errorf("Classify(%q) = %s, want %s", tc.msg, got, tc.want)
		}
	}
}

func TestImageOfMessage(t *testing.T) {
	for msg, want := range map[string]string{
		`Failed to pull image "127.0.0.1:5000/app:1": x`:                     "127.0.0.1:5000/app:1",
		`Back-off pulling image "ghcr.io/a/b@sha256:abc": ErrImagePull: x`:   "ghcr.io/a/b@sha256:abc",
		`Container image "a:1" is not present with pull policy of Never`:     "a:1",
		`Failed to apply default image tag "X/Y:1": couldn't parse`:          "X/Y:1",
		`image pull failed for r/a:1 because the registry is unavailable: x`: "r/a:1",
		`rpc error: code = NotFound desc = failed to pull and unpack image "r:5000/model:missing": failed to resolve reference "r:5000/model:missing": not found`: "r:5000/model:missing",
		`rpc error: code = NotFound desc = failed to pull and unpack image "r:5000/model:missing": failed to resolve image: r:5000/model:missing: not found`:      "r:5000/model:missing",
		`Error: ErrImagePull`: "",
	} {
		if got := ImageOfMessage(msg); got != want {
			t.Errorf("ImageOfMessage(%q) = %q, want %q", msg, got, want)
		}
	}
}

func TestMissingSecretNames(t *testing.T) {
	got := MissingSecretNames(`Unable to retrieve some image pull secrets (gone, other); attempting to pull the image may not succeed.`)
	if !slices.Equal(got, []string{"gone", "other"}) {
		t.Errorf("got %v", got)
	}
	if MissingSecretNames("no list") != nil {
		t.Error("a message without a list gave names")
	}
}

func TestIsPullFailureEvent(t *testing.T) {
	for _, tc := range []struct {
		reason, msg string
		want        bool
	}{
		{"Failed", `Failed to pull image "a:1": x`, true},
		{"Failed", `Error: ErrImagePull`, false},
		{"Failed", `Error: failed to create containerd task`, false},
		{"InspectFailed", `Failed to apply default image tag "A"`, true},
		{"ErrImageNeverPull", `Container image "a" is not present`, true},
		{"FailedToRetrieveImagePullSecret", `Unable to retrieve some image pull secrets (a)`, true},
		{"BackOff", `Back-off pulling image "a"`, false},
		{"Unhealthy", `Readiness probe failed`, false},
	} {
		if got := IsPullFailureEvent(tc.reason, tc.msg); got != tc.want {
			t.Errorf("IsPullFailureEvent(%s, %q) = %v", tc.reason, tc.msg, got)
		}
	}
}

// FuzzClassify: any message gets a cause of the closed set, and the image
// found in it is a substring of it.
func FuzzClassify(f *testing.F) {
	f.Add(`Failed to pull image "127.0.0.1:5000/app:1": 401 Unauthorized`)
	f.Add(`Back-off pulling image "x`)
	f.Add(`Unable to retrieve some image pull secrets (`)
	f.Fuzz(func(t *testing.T, msg string) {
		if c := Classify(msg); !slices.Contains(Causes, c) {
			t.Fatalf("cause %q is not in the closed set", c)
		}
		if img := ImageOfMessage(msg); img != "" && !strings.Contains(msg, img) {
			t.Fatalf("image %q is not in the message", img)
		}
		_ = MissingSecretNames(msg)
	})
}
