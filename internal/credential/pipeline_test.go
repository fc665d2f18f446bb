package credential

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"regcred.dev/regcred/internal/mirror"
)

func cred(t *testing.T, name string, registries ...string) Injectable {
	t.Helper()
	m, bad := NewMatcher(name, registries)
	if len(bad) > 0 {
		t.Fatalf("bad keys %v", bad)
	}
	return &compiledForTest{name: name, Matcher: m}
}

type compiledForTest struct {
	name string
	*Matcher
}

func (c *compiledForTest) SecretName() string { return c.name }

func TestPlanImages(t *testing.T) {
	rules := mirror.MustCompile([]mirror.Rule{{Source: "docker.io", Mirror: "harbor.internal/dockerhub"}})
	creds := []Injectable{cred(t, "hub", "docker.io"), cred(t, "harbor", "harbor.internal"), cred(t, "ghcr", "ghcr.io/acme")}
	resolve := func(ref string) *Resolved { return Resolve(rules, ref) }
	for _, tc := range []struct {
		name     string
		images   []Image
		present  []string
		rewrites []string
		add      []string
		errors   []string
	}{
		{"mirror first, then the mirror's credential", []Image{{"app", "nginx:1.27"}},
			nil, []string{"harbor.internal/dockerhub/library/nginx:1.27"}, []string{"harbor"}, nil},
		{"already listed is not added again", []Image{{"app", "ghcr.io/acme/api:1"}},
			[]string{"ghcr"}, []string{""}, nil, nil},
		{"image volume counts", []Image{{"app", "registry.example.com/x:1"}, {VolumeKey("model"), "ghcr.io/acme/model:1"}},
			nil, []string{"", ""}, []string{"ghcr"}, nil},
		{"unparsable left alone, the rest still decided", []Image{{"bad", "a b"}, {VolumeKey("v"), "::"}, {"ok", "ghcr.io/acme/a"}},
			nil, []string{"", "", ""}, []string{"ghcr"}, []string{"container bad: ", "image volume v: "}},
		{"each credential once, in the order given", []Image{{"a", "ghcr.io/acme/a"}, {"b", "harbor.internal/b"}, {"c", "ghcr.io/acme/c"}},
			nil, []string{"", "", ""}, []string{"harbor", "ghcr"}, nil},
		{"nothing matches", []Image{{"a", "quay.io/x/y"}}, nil, []string{""}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := PlanImages(tc.images, tc.present, creds, resolve)
			if !slices.Equal(p.Rewrites, tc.rewrites) {
				t.Errorf("rewrites %q, want %q", p.Rewrites, tc.rewrites)
			}
			var added []string
			for _, c := range p.Add {
				added = append(added, c.SecretName())
			}
			if !slices.Equal(added, tc.add) {
				t.Errorf("added %v, want %v", added, tc.add)
			}
			errs := p.Errors(tc.images)
			if len(errs) != len(tc.errors) {
				t.Fatalf("errors %q, want %d", errs, len(tc.errors))
			}
			for i, prefix := range tc.errors {
				if len(errs[i]) <= len(prefix) || errs[i][:len(prefix)] != prefix {
					t.Errorf("error %q, want it to start with %q", errs[i], prefix)
				}
			}
			if p.Changed() != (len(tc.add) > 0 || slices.ContainsFunc(tc.rewrites, func(s string) bool { return s != "" })) {
				t.Errorf("Changed() = %v", p.Changed())
			}
		})
	}
}

func TestPodImagesInKubeletOrder(t *testing.T) {
	spec := &corev1.PodSpec{
		InitContainers:      []corev1.Container{{Name: "init", Image: "i"}},
		Containers:          []corev1.Container{{Name: "app", Image: "a"}},
		EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "dbg", Image: "e"}}},
		Volumes: []corev1.Volume{
			{Name: "empty", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "model", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "v"}}},
		},
	}
	imgs := PodImages(spec)
	var got []string
	for _, img := range imgs {
		got = append(got, img.Where+"="+img.Ref)
	}
	if want := []string{"init=i", "app=a", "dbg=e", "volume/model=v"}; !slices.Equal(got, want) {
		t.Fatalf("images %v, want %v", got, want)
	}
	imgs[3].Set("v2")
	imgs[1].Set("a2")
	if spec.Volumes[1].Image.Reference != "v2" || spec.Containers[0].Image != "a2" {
		t.Errorf("Set did not change the spec: %+v", spec)
	}
}
