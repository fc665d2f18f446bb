package policy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/google/go-cmp/cmp"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/manager"
	"regcred.dev/regcred/internal/manager/inprocess"
	"regcred.dev/regcred/internal/policy"
	"regcred.dev/regcred/internal/policy/policytest"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/controlplane"
	"regcred.dev/regcred/internal/testenv/testsuite"
)

const regcredNS = "regcred-system"

var suite = testsuite.New(controlplane.WithSchemeAdder(v1alpha1.AddToScheme))

func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }

// admitted is what the API server made of a Pod created with dry run:
// the Pod, or the error it refused it with.
type admitted struct {
	Pod *corev1.Pod
	Err string
}

func dryRun(ctx context.Context, c client.Client, p *corev1.Pod) admitted {
	p = p.DeepCopy()
	if err := c.Create(ctx, p, client.DryRunAll); err != nil {
		return admitted{Err: err.Error()}
	}
	// Fields only the request itself sets; the rest is the API
	// server's defaulting, the same in both runs.
	p.UID, p.CreationTimestamp, p.ResourceVersion, p.ManagedFields = "", metav1.Time{}, "", nil
	return admitted{Pod: p}
}

// startManager runs a manager in a mode until the returned stop is called.
func startManager(t *testing.T, cp *controlplane.ControlPlane, mode string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	certDir := t.TempDir()
	done, err := inprocess.Start(ctx, cp.Config, inprocess.Options{Namespace: regcredNS, CertDir: certDir,
		FailurePolicy: string(admissionregistrationv1.Fail), PodInjection: mode})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return func() {
		cancel()
		<-done
	}
}

// install creates the corpus's namespaces, credentials (with their
// sources) and mirrors.
func install(t *testing.T, c client.Client) {
	t.Helper()
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: regcredNS}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	data, _ := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{"example.com": {Username: "u", Password: "p"}}}).MarshalDockerConfigJSON()
	source := func(ns, name string) {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
		if err := c.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	for _, o := range policytest.Objects() {
		if ns, ok := o.(*corev1.Namespace); ok {
			// The API server sets kubernetes.io/metadata.name itself.
			if err := c.Create(ctx, ns.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
	}
	for _, o := range policytest.Objects() {
		switch x := o.(type) {
		case *v1alpha1.ClusterRegistryCredential:
			source(regcredNS, x.Spec.Source.SecretRef.Name)
		case *v1alpha1.RegistryCredential:
			source(x.Namespace, x.Spec.Source.SecretRef.Name)
		}
	}
	for _, o := range policytest.Objects() {
		if _, ok := o.(*corev1.Namespace); ok {
			continue
		}
		err := c.Create(ctx, o.DeepCopyObject().(client.Object))
		switch {
		case apierrors.IsInvalid(err):
			// Keys the CRD refuses (? and [] globs, quotes) are for the
			// in-process comparison; both injectors see what exists.
			t.Logf("the API server refuses %T %s: %v", o, o.GetName(), err)
		case err != nil && !apierrors.IsAlreadyExists(err):
			t.Fatalf("%T %s: %v", o, o.GetName(), err)
		}
	}
}

// waitInjected waits until a probe Pod is injected with secret: the
// webhook serves, or the API server has loaded the policies.
func waitInjected(t *testing.T, c client.Client, secret string) {
	t.Helper()
	probe := policytest.Pod("harbor.internal/team/app:1")
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := dryRun(ctx, c, probe)
		if got.Pod != nil && len(got.Pod.Spec.ImagePullSecrets) > 0 && got.Pod.Spec.ImagePullSecrets[0].Name == secret {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no injection within 2 minutes: %+v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPoliciesAgreeWithTheWebhookOnTheAPIServer creates the corpus's
// Pods (dry run) through the real API server twice: with regcred's
// webhook, then with the policies regcred generates in policy mode. Both
// must give identical Pods, or refuse a Pod alike. Then, with the manager
// stopped, the policies still inject.
func TestPoliciesAgreeWithTheWebhookOnTheAPIServer(t *testing.T) {
	testenv.SkipShort(t, "integration test")
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	cp := suite.ControlPlane(t)
	c := cp.Client
	ctx := context.Background()
	install(t, c)
	corpus := policytest.Corpus()

	stop := startManager(t, cp, manager.PodInjectionWebhook)
	waitInjected(t, c, "regcred-harbor")
	viaWebhook := make([]admitted, len(corpus))
	for i, tc := range corpus {
		viaWebhook[i] = dryRun(ctx, c, tc.Pod)
	}
	stop()

	// Policy mode removes the webhook configuration regcred registered:
	// left behind with failurePolicy Fail, it would refuse every Pod.
	stop = startManager(t, cp, manager.PodInjectionPolicy)
	waitGone(t, c)
	waitInjected(t, c, "regcred-harbor")
	var policies admissionregistrationv1.MutatingAdmissionPolicyList
	if err := c.List(ctx, &policies, client.MatchingLabels{policy.LabelPolicy: "true"}); err != nil || len(policies.Items) == 0 {
		t.Fatalf("generated policies: %v, %v", len(policies.Items), err)
	}
	compare := func(phase string) {
		t.Helper()
		changed, refused := 0, 0
		for i, tc := range corpus {
			got := dryRun(ctx, c, tc.Pod)
			if diff := cmp.Diff(viaWebhook[i], got); diff != "" {
				b, _ := json.Marshal(tc.Pod.Spec)
				t.Errorf("%s: Pod %d in %s %s: webhook (-) and policies (+) differ:\n%s", phase, i, tc.Namespace, b, diff)
			}
			switch {
			case got.Err != "":
				refused++
			case len(got.Pod.Annotations) > len(tc.Pod.Annotations) || len(got.Pod.Spec.ImagePullSecrets) > len(tc.Pod.Spec.ImagePullSecrets):
				changed++
			}
		}
		t.Logf("%s: %d Pods, %d injected or rewritten, %d refused by validation alike", phase, len(corpus), changed, refused)
		if changed < len(corpus)/3 {
			t.Errorf("%s: only %d of %d Pods changed", phase, changed, len(corpus))
		}
	}
	compare("manager running")

	// A change reaches the policies, and the API server, promptly.
	start := time.Now()
	late := policytest.Cred("late", "late.example.com")
	late.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
	if err := c.Create(ctx, late); err != nil {
		t.Fatal(err)
	}
	probe := policytest.Pod("late.example.com/app:1")
	for {
		got := dryRun(ctx, c, probe)
		if got.Pod != nil && len(got.Pod.Spec.ImagePullSecrets) == 1 && got.Pod.Spec.ImagePullSecrets[0].Name == "regcred-late" {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("a new credential did not reach Pods within a minute: %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("a new credential reached admission %s after its creation (policy written, then the API server's 1 s policy refresh)", time.Since(start).Round(time.Millisecond))
	if err := c.Delete(ctx, late); err != nil {
		t.Fatal(err)
	}
	waitNot(t, c, probe)

	conditions(t, c)

	stop()
	compare("manager stopped")

	// Back to the webhook: the manager removes the policies it wrote.
	stop = startManager(t, cp, manager.PodInjectionWebhook)
	defer stop()
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		var left admissionregistrationv1.MutatingAdmissionPolicyList
		if err := c.List(ctx, &left, client.MatchingLabels{policy.LabelPolicy: "true"}); err != nil {
			return err
		}
		var bindings admissionregistrationv1.MutatingAdmissionPolicyBindingList
		if err := c.List(ctx, &bindings, client.MatchingLabels{policy.LabelPolicy: "true"}); err != nil {
			return err
		}
		if n := len(left.Items) + len(bindings.Items); n > 0 {
			return fmt.Errorf("%d generated policies and bindings left in webhook mode", n)
		}
		return nil
	})
}

// conditions: each credential's PodInjection condition says whether the
// policies carry it, with a Warning Event when they cannot: past the
// bound it shares with its namespace's others, which turns back when room
// is made. (One credential's own bound, 64 keys, is the CRD's too.)
func conditions(t *testing.T, c client.Client) {
	t.Helper()
	ctx := context.Background()
	want := func(obj client.Object, status metav1.ConditionStatus, reason string) {
		t.Helper()
		testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return err
			}
			c, err := credential.From(obj)
			if err != nil {
				return err
			}
			cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionPodInjection)
			switch {
			case cond == nil:
				return fmt.Errorf("%s: no PodInjection condition", obj.GetName())
			case cond.Status != status || cond.Reason != reason:
				return fmt.Errorf("%s: PodInjection %s/%s (%s), want %s/%s", obj.GetName(), cond.Status, cond.Reason, cond.Message, status, reason)
			}
			return nil
		})
	}
	harbor := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "harbor"}}
	want(harbor, metav1.ConditionTrue, v1alpha1.ReasonAdmissionPolicy)

	// Seven RegistryCredentials of 64 keys in one namespace: six fit its
	// policy's 400, the last by name is refused until the first goes.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crowded"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	var rcs []*v1alpha1.RegistryCredential
	for i := 0; i < 7; i++ {
		rc := policytest.Tenant("crowded", fmt.Sprintf("rc-%d", i), policy.DefaultMaxKeysPerCredential)
		if err := c.Create(ctx, rc); err != nil {
			t.Fatal(err)
		}
		rcs = append(rcs, rc)
	}
	want(rcs[5], metav1.ConditionTrue, v1alpha1.ReasonAdmissionPolicy)
	want(rcs[6], metav1.ConditionFalse, "TooLargeForAdmissionPolicy")
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		var evs corev1.EventList
		if err := c.List(ctx, &evs, client.InNamespace("crowded")); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "rc-6" && e.Reason == "TooLargeForAdmissionPolicy" && e.Type == corev1.EventTypeWarning {
				return nil
			}
		}
		return fmt.Errorf("no TooLargeForAdmissionPolicy Event on rc-6")
	})
	if err := c.Delete(ctx, rcs[0]); err != nil {
		t.Fatal(err)
	}
	want(rcs[6], metav1.ConditionTrue, v1alpha1.ReasonAdmissionPolicy)
	var crowded admissionregistrationv1.MutatingAdmissionPolicy
	if err := c.Get(ctx, client.ObjectKey{Name: "regcred-pod-injection-crowded"}, &crowded); err != nil {
		t.Errorf("the crowded namespace's policy: %v", err)
	}
}

// waitGone waits for the webhook configuration regcred registered to go.
func waitGone(t *testing.T, c client.Client) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := c.Get(context.Background(), client.ObjectKey{Name: "regcred"}, &admissionregistrationv1.MutatingWebhookConfiguration{})
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook configuration is still there: %v", errors.Join(err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitNot waits until probe is no longer injected (the deleted
// credential left the policies and the API server).
func waitNot(t *testing.T, c client.Client, probe *corev1.Pod) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := dryRun(context.Background(), c, probe)
		if got.Pod != nil && len(got.Pod.Spec.ImagePullSecrets) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a deleted credential is still injected: %+v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
