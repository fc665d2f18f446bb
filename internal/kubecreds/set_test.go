package kubecreds

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"regcred.dev/regcred/internal/dockercfg"
)

func pullSecret(ns, name, config string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(config)},
	}
}

// TestLoadOrder: pull Secrets first, then the nodes in the order added; a
// missing Secret is a warning, as the kubelet skips it.
func TestLoadOrder(t *testing.T) {
	cs := fake.NewClientset(pullSecret("ns", "a", `{"auths":{"r.io":{"username":"secret","password":"p"}}}`))
	set, err := Load(context.Background(), Sources{Client: cs, Secrets: []types.NamespacedName{
		{Namespace: "ns", Name: "gone"}, {Namespace: "ns", Name: "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	ignored := set.AddNode("node.json", &dockercfg.Config{Auths: map[string]dockercfg.Entry{
		"r.io":        {Username: "node", Password: "p"},
		"bad key:x:y": {Username: "x", Password: "p"}}})
	if len(ignored) != 1 {
		t.Errorf("ignored keys %v, want the one invalid key", ignored)
	}
	var users []string
	for _, c := range set.Candidates("r.io/app") {
		users = append(users, c.Username)
	}
	if got := strings.Join(users, ","); got != "secret,node" {
		t.Errorf("candidates %s, want secret,node", got)
	}
	if len(set.Warnings) != 1 || !strings.Contains(set.Warnings[0], "pull secret ns/gone does not exist") {
		t.Errorf("warnings %q", set.Warnings)
	}
}

// TestLoadMalformed: a pull Secret that does not parse fails every pull,
// so only the nodes' credentials remain candidates.
func TestLoadMalformed(t *testing.T) {
	cs := fake.NewClientset(pullSecret("ns", "bad", `{"auths":`))
	set, err := Load(context.Background(), Sources{Client: cs, Secrets: []types.NamespacedName{{Namespace: "ns", Name: "bad"}}})
	if err != nil {
		t.Fatal(err)
	}
	if set.Malformed == nil {
		t.Fatal("Malformed is nil for a Secret that does not parse")
	}
	set.AddNode("node.json", &dockercfg.Config{Auths: map[string]dockercfg.Entry{"r.io": {Username: "node", Password: "p"}}})
	if c := set.Candidates("r.io/app"); len(c) != 1 || c[0].Username != "node" {
		t.Errorf("candidates %v, want only the node's", c)
	}
}
