package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv"
)

// TestVerify: spec.verify probes a real registry the way a pull starts and
// reports its answer in the Verified condition — OK for a working login,
// Unauthorized for a wrong password, NoCredential for an image of another
// registry — and does not probe again within the interval when the
// credential is reconciled for another reason.
func TestVerify(t *testing.T) {
	c := startManager(t)
	reg := tokenRegistry(t)
	for _, tc := range []struct {
		name, password, image, reason string
		status                        metav1.ConditionStatus
	}{
		{"verify-ok", reg.User.Password, reg.Ref("team/app:v1"), "OK", metav1.ConditionTrue},
		{"verify-wrong", "wrong-password", reg.Ref("team/app:v1"), "Unauthorized", metav1.ConditionFalse},
		{"verify-missing", reg.User.Password, reg.Ref("nope:1"), "NotFound", metav1.ConditionFalse},
		{"verify-elsewhere", reg.User.Password, "other.example/app:1", v1alpha1.ReasonNoCredential, metav1.ConditionFalse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			createSource(t, c, regcredNamespace, tc.name, testenv.DockerConfigJSON(t, reg.Host, reg.User.Name, tc.password))
			cred := clusterCred(tc.name, tc.name, map[string]string{"none": "selected"}, reg.Host)
			cred.Spec.Verify = &v1alpha1.Verify{Image: tc.image, Interval: metav1.Duration{Duration: time.Hour}}
			if err := c.Create(bg, cred); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { deleteAndWait(t, c, cred) })
			got := waitVerified(t, c, tc.name, tc.status, tc.reason)
			if got.Status.Verify == nil || got.Status.Verify.ProbedAt == nil || got.Status.Verify.Image != tc.image {
				t.Fatalf("status.verify %+v", got.Status.Verify)
			}
			cond := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionVerified)
			if cond.Message == "" || strings.Contains(cond.Message, reg.User.Password) || strings.Contains(cond.Message, "wrong-password") {
				t.Errorf("message %q: empty or holds a password", cond.Message)
			}
			probed := got.Status.Verify.ProbedAt.Time

			// A spec change makes the controller reconcile; the interval
			// (1h) has not passed, so there is no new probe.
			got.Spec.PodInjection.Enabled = ptr.To(false)
			if err := c.Update(bg, got); err != nil {
				t.Fatal(err)
			}
			clusterReady(t, c, tc.name, metav1.ConditionTrue, v1alpha1.ReasonNoNamespaces, "")
			var after v1alpha1.ClusterRegistryCredential
			if err := c.Get(bg, client.ObjectKey{Name: tc.name}, &after); err != nil {
				t.Fatal(err)
			}
			if !after.Status.Verify.ProbedAt.Time.Equal(probed) {
				t.Errorf("probed again within the interval: %s then %s", probed, after.Status.Verify.ProbedAt)
			}
		})
	}
}

func waitVerified(t *testing.T, c client.Client, name string, status metav1.ConditionStatus, reason string) *v1alpha1.ClusterRegistryCredential {
	t.Helper()
	var obj v1alpha1.ClusterRegistryCredential
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &obj); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionVerified)
		if cond == nil || cond.Status != status || cond.Reason != reason {
			return fmt.Errorf("Verified %+v, want %s/%s", cond, status, reason)
		}
		return nil
	})
	return &obj
}
