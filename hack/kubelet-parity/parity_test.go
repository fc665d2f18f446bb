// Package parity checks that regcred resolves pull credentials exactly as
// the kubelet does, by running generated Secrets and images through both
// regcred's internal/keyring and the kubelet's own pkg/credentialprovider.
package parity

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/secrets"
	"k8s.io/kubernetes/pkg/util/parsers"

	"regcred.dev/regcred/internal/keyring"
)

func TestMain(m *testing.M) {
	// The kubelet logs every key it cannot parse; the test reports what matters.
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("stderrthreshold", "FATAL")
	klog.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// cred is what both sides agree to compare: the credential, in order.
type cred struct {
	User, Pass, Email string
}

// kubeletResolve is the kubelet's path from a Pod's pull Secrets to the
// credentials it tries (image_manager.go: MakeDockerKeyring, then Lookup of
// the normalized repository), with an empty node keyring.
func kubeletResolve(pullSecrets []v1.Secret, image string) ([]cred, error) {
	kr, err := secrets.MakeDockerKeyring(pullSecrets, credentialprovider.UnionDockerKeyring{})
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	repo, _, _, err := parsers.ParseImageName(image)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	found, _ := kr.Lookup(repo)
	out := make([]cred, 0, len(found))
	for _, c := range found {
		out = append(out, cred{c.Username, c.Password, c.Email})
	}
	return out, nil
}

// regcredResolve is the same path through regcred.
func regcredResolve(pullSecrets []v1.Secret, image string) ([]cred, []keyring.Credential, error) {
	var in []keyring.PullSecret
	for _, s := range pullSecrets {
		in = append(in, keyring.PullSecret{Namespace: s.Namespace, Name: s.Name, Type: string(s.Type), Data: s.Data})
	}
	kr, _, err := keyring.FromPullSecrets(in)
	if err != nil {
		return nil, nil, fmt.Errorf("keyring: %w", err)
	}
	_, found, err := kr.LookupImage(image)
	if err != nil {
		return nil, nil, fmt.Errorf("image: %w", err)
	}
	out := make([]cred, 0, len(found))
	for _, c := range found {
		out = append(out, cred{c.Username, c.Password, c.Email})
	}
	return out, found, nil
}

// canonical sorts runs of credentials that came from the same Secret under
// the same normalized key: the kubelet reads a Secret's entries from a Go
// map, so their relative order there is random and not a difference.
func canonical(creds []cred, group func(cred) string) []cred {
	out := slices.Clone(creds)
	for i := 0; i < len(out); {
		j := i + 1
		for j < len(out) && group(out[j]) == group(out[i]) {
			j++
		}
		slices.SortFunc(out[i:j], func(a, b cred) int { return strings.Compare(a.User+"\x00"+a.Pass, b.User+"\x00"+b.Pass) })
		i = j
	}
	return out
}

var (
	schemes = []string{"", "", "https://", "http://"}
	hosts   = []string{
		"registry.example.com", "*.example.com", "registry.*.com", "*.*.com", "example.com", "*example.com",
		"sub.registry.example.com", "docker.io", "index.docker.io", "*.docker.io", "localhost", "127.0.0.1",
		"quay.io", "ghcr.io", "REGISTRY.example.com", "[::1]", "10.0.0.1", "reg?stry.example.com",
		"r[a-z]gistry.example.com", "*", "registry.example.*", "", "foo",
	}
	ports = []string{"", "", "", ":5000", ":443", ":*"}
	paths = []string{"", "", "/", "/v1/", "/v2/", "/v1", "/team", "/team/", "/tea", "/team/app", "/v2/team", "/library", "/library/nginx"}

	imageHosts = []string{
		"", "", "docker.io/", "index.docker.io/", "registry.example.com/", "sub.registry.example.com/", "example.com/",
		"localhost/", "localhost:5000/", "registry.example.com:5000/", "registry.example.com:443/", "127.0.0.1:5000/",
		"[::1]:5000/", "quay.io/", "ghcr.io/", "10.0.0.1/", "foo/", "REGISTRY.example.com/",
	}
	imagePaths = []string{"app", "team/app", "teams/app", "tea", "library/nginx", "nginx", "team/app/sub", "library"}
	imageTags  = []string{"", ":v1", ":latest", "@sha256:" + strings.Repeat("ab", 32)}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

type generated struct {
	secrets []v1.Secret
	keys    []string
	// origin maps a username to the Secret index and normalized key it
	// was generated under.
	origin map[string]string
}

func generate(r *rand.Rand) generated {
	g := generated{origin: map[string]string{}}
	nSecrets := 1 + r.IntN(3)
	for si := range nSecrets {
		entries := map[string]map[string]string{}
		for ki := range 1 + r.IntN(5) {
			key := pick(r, schemes) + pick(r, hosts) + pick(r, ports) + pick(r, paths)
			user := fmt.Sprintf("s%dk%d", si, ki)
			pass := fmt.Sprintf("pw-%d-%d", si, ki)
			e := map[string]string{}
			switch r.IntN(10) {
			case 0: // auth wins over username/password
				e["username"], e["password"] = "ignored", "ignored"
				e["auth"] = base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
			case 1: // unpadded auth
				e["auth"] = base64.RawStdEncoding.EncodeToString([]byte(user + ":" + pass))
			case 2:
				if r.IntN(4) == 0 { // malformed: the kubelet fails the whole Pod
					e["auth"] = "%%not-base64"
				} else {
					e["username"], e["password"] = user, pass
				}
			default:
				e["username"], e["password"], e["email"] = user, pass, user+"@example.com"
			}
			entries[key] = e
			g.keys = append(g.keys, key)
			norm, err := keyring.NormalizeKey(key)
			if err != nil {
				norm = "!" + key
			}
			g.origin[user] = fmt.Sprintf("%d|%s", si, norm)
		}
		s := v1.Secret{}
		s.Namespace, s.Name = "ns", fmt.Sprintf("secret-%d", si)
		switch r.IntN(12) {
		case 0:
			s.Type = v1.SecretTypeDockercfg
			b, _ := json.Marshal(entries)
			s.Data = map[string][]byte{v1.DockerConfigKey: b}
		case 1:
			s.Type = v1.SecretTypeOpaque
			b, _ := json.Marshal(map[string]any{"auths": entries})
			s.Data = map[string][]byte{v1.DockerConfigJsonKey: b}
		case 2:
			s.Type = v1.SecretTypeDockerConfigJson
			s.Data = map[string][]byte{v1.DockerConfigJsonKey: nil}
		default:
			s.Type = v1.SecretTypeDockerConfigJson
			b, _ := json.Marshal(map[string]any{"auths": entries})
			s.Data = map[string][]byte{v1.DockerConfigJsonKey: b}
		}
		g.secrets = append(g.secrets, s)
	}
	return g
}

// image is a random image reference, half the time aimed at one of the
// generated keys (globs filled in, scheme and API path dropped) so that
// matches are frequent.
func (g generated) image(r *rand.Rand) string {
	if r.IntN(2) == 0 || len(g.keys) == 0 {
		return pick(r, imageHosts) + pick(r, imagePaths) + pick(r, imageTags)
	}
	k := pick(r, g.keys)
	k = strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
	k = strings.Replace(k, "/v1/", "/", 1)
	k = strings.Replace(k, "/v2/", "/", 1)
	k = strings.NewReplacer("*", pick(r, []string{"x", "registry", "a-b"}), "?", "e", "[a-z]", "e").Replace(k)
	k = strings.TrimSuffix(k, "/")
	if k == "" {
		k = "registry.example.com"
	}
	return k + "/" + pick(r, imagePaths) + pick(r, imageTags)
}

func TestGeneratedPodsMatchKubelet(t *testing.T) {
	const cases = 20000
	r := rand.New(rand.NewPCG(1, 2))
	var compared, withCreds, malformed int
	for i := range cases {
		g := generate(r)
		image := g.image(r)
		want, wantErr := kubeletResolve(g.secrets, image)
		got, _, gotErr := regcredResolve(g.secrets, image)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("case %d image %q: kubelet err=%v, regcred err=%v\nsecrets: %s", i, image, wantErr, gotErr, dump(g.secrets))
		}
		if wantErr != nil {
			malformed++
			continue
		}
		group := func(c cred) string {
			if o, ok := g.origin[c.User]; ok {
				return o
			}
			return "?"
		}
		if !slices.Equal(canonical(want, group), canonical(got, group)) {
			t.Fatalf("case %d image %q:\nkubelet: %v\nregcred: %v\nsecrets: %s", i, image, want, got, dump(g.secrets))
		}
		compared++
		if len(want) > 0 {
			withCreds++
		}
	}
	t.Logf("%d cases: %d compared (%d with credentials), %d rejected as malformed by both", cases, compared, withCreds, malformed)
	if withCreds < cases/10 {
		t.Errorf("only %d cases resolved any credential: the generator is too weak to prove parity", withCreds)
	}
}

func dump(s []v1.Secret) string {
	var b strings.Builder
	for _, sec := range s {
		fmt.Fprintf(&b, "\n  %s (%s): %s%s", sec.Name, sec.Type, sec.Data[v1.DockerConfigJsonKey], sec.Data[v1.DockerConfigKey])
	}
	return b.String()
}

// FuzzParity feeds arbitrary .dockerconfigjson content and image strings to
// both implementations.
func FuzzParity(f *testing.F) {
	f.Add([]byte(`{"auths":{"registry.example.com":{"auth":"dTpw"},"*.example.com:5000/team":{"username":"a","password":"b"}}}`), "registry.example.com/team/app:v1")
	f.Add([]byte(`{"auths":{"https://index.docker.io/v1/":{"username":"hub","password":"p"}}}`), "nginx")
	f.Add([]byte(`{"auths":{"docker.io":{"auth":"Zm9vOmJhcg"},"index.docker.io":{"auth":"Zm9vOm\nJhcg==\n"}}}`), "library/nginx@sha256:"+strings.Repeat("0", 64))
	f.Add([]byte(`{"Auths":{"[::1]:5000":{"Username":"x"}}}`), "[::1]:5000/app")
	f.Add([]byte(`{"auths":{"a":{"auth":"pants"}}}`), "a/b")
	f.Fuzz(func(t *testing.T, config []byte, image string) {
		s := v1.Secret{Type: v1.SecretTypeDockerConfigJson, Data: map[string][]byte{v1.DockerConfigJsonKey: config}}
		s.Namespace, s.Name = "ns", "fuzz"
		want, wantErr := kubeletResolve([]v1.Secret{s}, image)
		got, found, gotErr := regcredResolve([]v1.Secret{s}, image)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("kubelet err=%v, regcred err=%v", wantErr, gotErr)
		}
		if wantErr != nil {
			return
		}
		if len(want) != len(got) {
			t.Fatalf("kubelet tried %d credentials, regcred %d:\n%v\n%v", len(want), len(got), want, got)
		}
		// Entries of one config under the same normalized key come in map
		// order from the kubelet: compare those runs as sets.
		norm := map[cred]string{}
		for _, c := range found {
			norm[cred{c.Username, c.Password, c.Email}] = c.NormalizedKey
		}
		group := func(c cred) string { return norm[c] }
		if !slices.Equal(canonical(want, group), canonical(got, group)) {
			t.Fatalf("kubelet: %v\nregcred: %v", want, got)
		}
	})
}
