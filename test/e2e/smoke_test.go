package e2e

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"regcred.dev/regcred/internal/testenv/testregistry"
)

// TestControlWithoutRegcred: the authenticated registry refuses a Pod with
// no pull Secret, and the kubelet says so; with the Secret written by hand,
// the same image runs. Every other case stands on these two facts.
func TestControlWithoutRegcred(t *testing.T) {
	e := cluster(t)
	reg := suite.Registry(t, testregistry.Basic)
	if err := e.TrustRegistry(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PushTestImage(bg, "control/app:1"); err != nil {
		t.Fatal(err)
	}
	ns := e.namespace(t, "control", nil)
	if err := e.c.Create(bg, pod(ns, "no-secret", reg.Ref("control/app:1"))); err != nil {
		t.Fatal(err)
	}
	events := e.waitPullFailure(t, ns, "no-secret")
	if !strings.Contains(events, refusedAnonymous) {
		t.Errorf("the kubelet's Event does not say the registry refused the pull without credentials:\n%s", events)
	}

	e.sourceSecret(t, ns, "by-hand", reg)
	p := pod(ns, "with-secret", reg.Ref("control/app:1"))
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "by-hand"}}
	if err := e.c.Create(bg, p); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, ns, "with-secret")
}
