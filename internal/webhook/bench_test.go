package webhook

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
)

// benchFixtures: 20 credentials and 5 mirror rules, the "typical" cluster
// of the design's target.
func benchFixtures() []client.Object {
	objs := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"team": "a"}}}}
	for i := range 20 {
		c := cred(fmt.Sprintf("cred-%02d", i), fmt.Sprintf("registry%02d.example.com", i), fmt.Sprintf("*.mirror%02d.example.com:5000/team", i))
		if i%4 == 0 {
			c.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
		}
		objs = append(objs, c)
	}
	objs = append(objs, cred("harbor", "harbor.internal"))
	m := &v1alpha1.ClusterImageMirror{ObjectMeta: metav1.ObjectMeta{Name: "airgap"}}
	for _, src := range []string{"docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "docker.io/bitnami"} {
		m.Spec.Mirrors = append(m.Spec.Mirrors, v1alpha1.MirrorRule{Source: src, Mirror: "harbor.internal/" + src})
	}
	return append(objs, m)
}

func benchPod() *corev1.Pod {
	p := pod("nginx:1.27", "registry03.example.com/team/api:2", "ghcr.io/acme/sidecar:1", "bitnami/redis:7", "registry.example.org/other:1")
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "quay.io/acme/migrate:3"}}
	return p
}

// BenchmarkHandle is the handler in-process on a typical Pod: 5 containers
// and an init container, 20 credentials, 5 mirror rules; decode, mutate,
// patch, as the webhook server calls it, with the snapshot warm.
func BenchmarkHandle(b *testing.B) {
	h, _ := newHandler(b, benchFixtures()...)
	req := request(b, "apps", benchPod(), false)
	ctx := context.Background()
	if resp := h.Handle(ctx, req); len(resp.Patches) == 0 {
		b.Fatal("no patch")
	}
	b.ReportAllocs()
	for b.Loop() {
		resp := h.Handle(ctx, req)
		if !resp.Allowed {
			b.Fatal(resp.Result)
		}
	}
}

// BenchmarkMutate is the decision alone, without JSON.
func BenchmarkMutate(b *testing.B) {
	h, _ := newHandler(b, benchFixtures()...)
	snap, err := h.snapshot(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"team": "a"}}}
	p := benchPod()
	b.ReportAllocs()
	for b.Loop() {
		if d := mutate(p.DeepCopy(), ns, snap); !d.Changed() {
			b.Fatal("nothing changed")
		}
	}
}

// BenchmarkHandleColdImages gives every Pod images never seen before, so
// every reference is parsed: the worst case.
func BenchmarkHandleColdImages(b *testing.B) {
	h, _ := newHandler(b, benchFixtures()...)
	ctx := context.Background()
	p := benchPod()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		q := p.DeepCopy()
		for j := range q.Spec.Containers {
			q.Spec.Containers[j].Image += fmt.Sprintf("-%d", i)
		}
		q.Spec.InitContainers[0].Image += fmt.Sprintf("-%d", i)
		resp := h.Handle(ctx, request(b, "apps", q, false))
		if !resp.Allowed {
			b.Fatal(resp.Result)
		}
	}
}
