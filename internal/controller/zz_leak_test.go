package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv"
)

// TestNoSecretInLogsEventsStatusOrMetrics runs last in the package: after
// a credential with a known password has gone through sync, a malformed
// source and a conflict, the password appears in no log line, Event,
// status or metric.
func TestNoSecretInLogsEventsStatusOrMetrics(t *testing.T) {
	c := startManager(t)
	const canary = "Canary-Controller-Pa55-91c2"
	sel := map[string]string{"regcred-test": "leak"}
	ns := newNamespace(t, c, "leak", sel)
	createSA(t, c, ns, "default", nil)
	// A conflicting foreign Secret in a second namespace.
	ns2 := newNamespace(t, c, "leak-conflict", sel)
	createSource(t, c, ns2, "regcred-leak", testenv.DockerConfigJSON(t, "x.example.com", "x", canary))

	src := createSource(t, c, regcredNamespace, "leak-source", testenv.DockerConfigJSON(t, "registry.example.com", "robot", canary))
	cred := clusterCred("leak", "leak-source", sel, "registry.example.com")
	if err := c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	clusterReady(t, c, "leak", metav1.ConditionFalse, v1alpha1.ReasonSyncFailed, "1/2")
	// A malformed source whose bad field holds the canary.
	src.Data[corev1.DockerConfigJsonKey] = []byte(fmt.Sprintf(`{"auths":{"registry.example.com":{"auth":"%s!!"}}}`, canary))
	if err := c.Update(bg, src); err != nil {
		t.Fatal(err)
	}
	clusterReady(t, c, "leak", metav1.ConditionFalse, "SourceInvalid", "")
	// And the password where a string was expected (the API server
	// rejects JSON that does not parse, but not JSON of the wrong shape).
	src.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{"registry.example.com":{"password":["` + canary + `"]}}}`)
	if err := c.Update(bg, src); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func(ctx context.Context) error {
		var obj v1alpha1.ClusterRegistryCredential
		if err := c.Get(ctx, client.ObjectKey{Name: "leak"}, &obj); err != nil {
			return err
		}
		if !strings.Contains(obj.Status.Conditions[0].Message, `field "password": expected string, got a JSON array`) {
			return fmt.Errorf("message %q", obj.Status.Conditions[0].Message)
		}
		return nil
	})

	// A cloud source: its keys and the tokens it got, through a refresh
	// and a revoked identity.
	w := newTokenWorld(t, 3*time.Second)
	keys, keyID := w.keysSecret(t, c, regcredNamespace)
	var keySecret corev1.Secret
	if err := c.Get(bg, client.ObjectKey{Namespace: regcredNamespace, Name: keys}, &keySecret); err != nil {
		t.Fatal(err)
	}
	secretKey := string(keySecret.Data["aws_secret_access_key"])
	ecr := ecrCred("leak-ecr", w.aws.URL, keys, sel, w.reg.Host)
	if err := c.Create(bg, ecr); err != nil {
		t.Fatal(err)
	}
	var tokens []string
	testenv.Eventually(t, wait, testenv.Condition("two ECR tokens in the copy", func() bool {
		d, _, err := secretData(bg, c, ns, "regcred-leak-ecr")
		if err != nil || d == nil {
			return false
		}
		if p := passwordOf(t, d, w.reg.Host); len(tokens) == 0 || tokens[len(tokens)-1] != p {
			tokens = append(tokens, p)
		}
		return len(tokens) >= 2
	}))
	w.aws.RevokeAccessKey(keyID)
	clusterReady(t, c, "leak-ecr", metav1.ConditionFalse, v1alpha1.ReasonAccessDenied, "")

	var obj, ecrObj v1alpha1.ClusterRegistryCredential
	if err := c.Get(bg, client.ObjectKey{Name: "leak"}, &obj); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(bg, client.ObjectKey{Name: "leak-ecr"}, &ecrObj); err != nil {
		t.Fatal(err)
	}
	status := fmt.Sprintf("%+v\n%+v", obj.Status, ecrObj.Status)
	ecrEvents, err := eventsFor(bg, c, "leak-ecr")
	if err != nil {
		t.Fatal(err)
	}
	events, err := eventsFor(bg, c, "leak")
	if err != nil {
		t.Fatal(err)
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metricText strings.Builder
	for _, f := range families {
		fmt.Fprintf(&metricText, "%s\n", f.String())
	}
	for where, text := range map[string]string{"status": status, "events": events + ecrEvents, "metrics": metricText.String(), "logs": logs.String()} {
		if text == "" {
			t.Errorf("%s: nothing to look at", where)
		}
		needles := []string{canary, canary[:12], secretKey}
		for _, tok := range tokens {
			needles = append(needles, tok, tok[:20])
		}
		for _, needle := range needles {
			if strings.Contains(text, needle) {
				t.Errorf("%s contains the password", where)
			}
		}
	}
	// The metrics regcred promises are there.
	for _, name := range []string{"regcred_credential_ready", "regcred_credential_namespaces", "regcred_sync_writes_total", "controller_runtime_reconcile_time_seconds",
		"regcred_credential_expiry_timestamp_seconds", "regcred_token_requests_total", "regcred_token_request_errors_total"} {
		if !strings.Contains(metricText.String(), name) {
			t.Errorf("metric %s missing", name)
		}
	}
	deleteAndWait(t, c, cred)
	deleteAndWait(t, c, ecr)
}
