package install

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/testenv"
)

// The chart's objects in cert-manager mode (regcred.fullname "regcred").
const (
	servingCert = "regcred-webhook-cert"
	chartCA     = "regcred-webhook-ca"
)

// certManager installs regcred with webhook.certificates=cert-manager on
// a cluster running cert-manager's own controller and CA injector (built
// from its module, hack/cert-manager), as a user with cert-manager does:
// the Certificate becomes Ready, cainjector fills the caBundle, a
// brand-new namespace's Pod is injected and runs; cert-manager renews the
// serving certificate while Pods are admitted under failurePolicy Fail,
// and none is refused; then the serving certificate moves to an Issuer of
// the user's own.
func (e *installEnv) certManager(t *testing.T) {
	e.helm = testenv.Tool(t, "helm3")
	e.startCertManager(t)
	set := []string{"--set", "image.tag=v0.2.0", "--set", "webhook.failurePolicy=Fail", "--set", "webhook.certificates=cert-manager"}

	start := time.Now()
	e.helmRun(append([]string{"install", relName, chartDir(), "--namespace", ns, "--wait", "--timeout", "5m"}, set...)...)
	e.waitCertificateReady(t, chartCA)
	e.waitCertificateReady(t, servingCert)
	caPEM := e.secretData(t, chartCA, "tls.crt")
	e.waitCABundleHas(t, caPEM, true)
	pods := e.readyPods(t, "v0.2.0", 2)
	t.Logf("measured: cert-manager mode, helm install to Certificates Ready, caBundle injected and both replicas Ready in %.1fs", time.Since(start).Seconds())
	e.waitServing(t, pods, e.secretData(t, servingCert, "tls.crt"))

	app := e.namespace(t, "cm-shop")
	e.deployment(t, app, "web")
	if pod := e.waitDeploymentPodRunning(t, app, "web"); !hasPullSecret(pod, "private-registry") {
		t.Errorf("pod %s/%s was not injected in cert-manager mode: %v", app, pod.Name, pod.Spec.ImagePullSecrets)
	}

	// cert-manager renews the serving certificate (a new key, as
	// rotationPolicy Always says) while Pods are admitted. cainjector
	// leaves the caBundle alone, the chart's CA being the same, and each
	// replica serves the new certificate once the kubelet has refreshed its
	// Secret volume.
	bundle := e.caBundle(t)
	old := e.secretData(t, servingCert, "tls.crt")
	probe := e.startAdmissionProbe(t, e.namespace(t, "cm-renewal"))
	renewed := time.Now()
	e.renew(t, servingCert)
	var fresh []byte
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		if fresh = e.secretData(t, servingCert, "tls.crt"); bytes.Equal(fresh, old) {
			return fmt.Errorf("the serving certificate has not been renewed yet")
		}
		return e.certificateReady(ctx, servingCert)
	})
	t.Logf("measured: cert-manager renewed the serving certificate in %.1fs", time.Since(renewed).Seconds())
	e.waitServing(t, pods, fresh)
	t.Logf("measured: both replicas serve the renewed certificate %.1fs after the renewal began", time.Since(renewed).Seconds())
	admitted := probe.expectClean(t, "across the renewal")
	t.Logf("measured: %d Pods admitted across the renewal, none refused or uninjected unless reported", admitted)
	if got := e.caBundle(t); !bytes.Equal(got, bundle) {
		t.Errorf("the renewal changed the caBundle: the webhook's Pods were out of it until they reloaded")
	}
	if k1, k2 := publicKey(t, old), publicKey(t, fresh); bytes.Equal(k1, k2) {
		t.Errorf("the renewed serving certificate kept its key; the chart asks for a new one (rotationPolicy Always)")
	}

	// An Issuer of the user's own: a CA the chart knows nothing of.
	// Pods are admitted across the switch too: cainjector merges the new
	// CA into the bundle, so the old serving certificate stays trusted
	// until the Pods reload.
	corpPEM := e.corpIssuer(t, "corp-ca")
	probe = e.startAdmissionProbe(t, e.namespace(t, "cm-switch"))
	switched := time.Now()
	e.helmRun(append([]string{"upgrade", relName, chartDir(), "--namespace", ns, "--wait", "--timeout", "5m",
		"--set", "webhook.certManager.issuerRef.name=corp-ca"}, set...)...)
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		if got := e.secretData(t, servingCert, "ca.crt"); !bytes.Equal(got, corpPEM) {
			return fmt.Errorf("the serving certificate is not yet signed by corp-ca")
		}
		return e.certificateReady(ctx, servingCert)
	})
	if err := e.c.Get(bg, client.ObjectKey{Namespace: ns, Name: chartCA}, certificateObject()); !apierrors.IsNotFound(err) {
		t.Errorf("the chart's own CA Certificate with issuerRef set: %v, want it gone", err)
	}
	e.waitCABundleHas(t, corpPEM, false)
	e.waitServing(t, pods, e.secretData(t, servingCert, "tls.crt"))
	admitted = probe.expectClean(t, "across the issuer switch")
	t.Logf("measured: switched to an Issuer of the user's own in %.1fs; %d Pods admitted across it, none refused or uninjected unless reported",
		time.Since(switched).Seconds(), admitted)
	app = e.namespace(t, "cm-corp")
	e.deployment(t, app, "web")
	if pod := e.waitDeploymentPodRunning(t, app, "web"); !hasPullSecret(pod, "private-registry") {
		t.Errorf("pod %s/%s was not injected with the serving certificate of corp-ca: %v", app, pod.Name, pod.Spec.ImagePullSecrets)
	}
	e.helmRun("uninstall", relName, "--namespace", ns, "--wait", "--timeout", "5m")
}

var (
	certificateGVK = schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}
	issuerGVK      = schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Issuer"}
)

func certificateObject() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(certificateGVK)
	return u
}

// startCertManager installs cert-manager's CRDs and runs its controller
// and CA injector, as processes on this machine with the cluster's admin
// kubeconfig, until the test ends.
func (e *installEnv) startCertManager(t *testing.T) {
	t.Helper()
	dir := filepath.Join(testenv.AssetsDir(), "cert-manager-crds")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cert-manager CRDs in %s (%v): run `make tools`", dir, err)
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096).Decode(&crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := e.c.Create(bg, &crd); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create CRD %s: %v", crd.Name, err)
		}
		names = append(names, crd.Name)
	}
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		for _, n := range names {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := e.c.Get(ctx, client.ObjectKey{Name: n}, &crd); err != nil {
				return err
			}
			established := false
			for _, c := range crd.Status.Conditions {
				established = established || (c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue)
			}
			if !established {
				return fmt.Errorf("CRD %s not Established", n)
			}
		}
		return nil
	})
	if err := e.c.Create(bg, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "cert-manager"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, name := range []string{"cert-manager-controller", "cert-manager-cainjector"} {
		log, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(testenv.Tool(t, name), "--kubeconfig", e.Kubeconfig)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var waitErr error
		go func() { waitErr = cmd.Wait(); close(done) }()
		e.certManagerDown = append(e.certManagerDown, func() error {
			select {
			case <-done:
				b, _ := os.ReadFile(log.Name())
				return fmt.Errorf("%s exited (%v): %s", name, waitErr, bytes.TrimSpace(b))
			default:
				return nil
			}
		})
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			_ = log.Close()
			if t.Failed() {
				b, _ := os.ReadFile(log.Name())
				if len(b) > 8<<10 {
					b = b[len(b)-8<<10:]
				}
				t.Logf("%s log ends:\n%s", name, b)
			}
		})
	}
}

// certificateReady is nil when the Certificate's Ready condition is True.
// A cert-manager program that has exited fails the test at once.
func (e *installEnv) certificateReady(ctx context.Context, name string) error {
	for _, down := range e.certManagerDown {
		if err := down(); err != nil {
			e.t.Fatal(err)
		}
	}
	u := certificateObject()
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		return err
	}
	conditions, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conditions {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			if m["status"] == "True" {
				return nil
			}
			return fmt.Errorf("Certificate %s not Ready: %v: %v", name, m["reason"], m["message"])
		}
	}
	return fmt.Errorf("Certificate %s has no Ready condition yet", name)
}

func (e *installEnv) waitCertificateReady(t *testing.T, name string) {
	t.Helper()
	testenv.Eventually(t, waitLong, func(ctx context.Context) error { return e.certificateReady(ctx, name) })
}

// renew asks cert-manager to issue a Certificate again now, as `cmctl
// renew` does: its Issuing condition set True.
func (e *installEnv) renew(t *testing.T, name string) {
	t.Helper()
	// cert-manager writes the status too: read again on a conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u := certificateObject()
		if err := e.c.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
			return err
		}
		conditions, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		conditions = slices.DeleteFunc(conditions, func(c any) bool {
			m, ok := c.(map[string]any)
			return ok && m["type"] == "Issuing"
		})
		conditions = append(conditions, map[string]any{"type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
			"message": "renewal asked for by regcred's install test", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)})
		if err := unstructured.SetNestedSlice(u.Object, conditions, "status", "conditions"); err != nil {
			return err
		}
		return e.c.Status().Update(bg, u)
	})
	if err != nil {
		t.Fatalf("ask cert-manager to renew %s: %v", name, err)
	}
}

func (e *installEnv) secretData(t *testing.T, name, key string) []byte {
	t.Helper()
	var s corev1.Secret
	if err := e.c.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		t.Fatal(err)
	}
	return s.Data[key]
}

// waitCABundleHas waits until cainjector has put the certificate certPEM
// into the webhook configuration's caBundle. With only, nothing else may
// be there; otherwise older certificates may stay: cainjector (from
// cert-manager 1.19, on by default since 1.21) merges a new CA into the
// bundle and drops certificates only once they expire.
func (e *installEnv) waitCABundleHas(t *testing.T, certPEM []byte, only bool) {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("the CA certificate is not PEM")
	}
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		if err := e.c.Get(ctx, client.ObjectKey{Name: relName}, &mwc); err != nil {
			return err
		}
		if len(mwc.Webhooks) != 1 {
			return fmt.Errorf("%d webhooks, want 1", len(mwc.Webhooks))
		}
		var certs [][]byte
		for rest := mwc.Webhooks[0].ClientConfig.CABundle; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			certs = append(certs, b.Bytes)
		}
		if !slices.ContainsFunc(certs, func(c []byte) bool { return bytes.Equal(c, block.Bytes) }) {
			return fmt.Errorf("the caBundle's %d certificates do not include the CA's yet", len(certs))
		}
		if only && len(certs) != 1 {
			return fmt.Errorf("the caBundle holds %d certificates, want the CA's alone", len(certs))
		}
		return nil
	})
}

// waitServing waits until each of pods serves the certificate certPEM on
// its webhook port (the kubelet refreshes a Secret volume about once a
// minute, and the server reloads the files it sees change).
func (e *installEnv) waitServing(t *testing.T, pods []string, certPEM []byte) {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("the serving Secret's tls.crt is not PEM")
	}
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		for _, name := range pods {
			var p corev1.Pod
			if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
				return err
			}
			conn, err := (&tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}}).
				DialContext(ctx, "tcp", net.JoinHostPort(p.Status.PodIP, "9443"))
			if err != nil {
				return fmt.Errorf("pod %s: %v", name, err)
			}
			served := conn.(*tls.Conn).ConnectionState().PeerCertificates
			_ = conn.Close()
			if len(served) == 0 || !bytes.Equal(served[0].Raw, block.Bytes) {
				return fmt.Errorf("pod %s does not serve the current certificate yet", name)
			}
		}
		return nil
	})
}

func publicKey(t *testing.T, certPEM []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("not PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.RawSubjectPublicKeyInfo
}

// corpIssuer makes a CA of the user's own, its Secret and a CA Issuer
// named name in regcred's namespace, waits until the Issuer is Ready and
// returns the CA's certificate.
func (e *installEnv) corpIssuer(t *testing.T, name string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "corp test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": certPEM, "tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})}}
	if err := e.c.Create(bg, secret); err != nil {
		t.Fatal(err)
	}
	issuer := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"ca": map[string]any{"secretName": name}}}}
	issuer.SetGroupVersionKind(issuerGVK)
	issuer.SetNamespace(ns)
	issuer.SetName(name)
	if err := e.c.Create(bg, issuer); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(issuer), issuer); err != nil {
			return err
		}
		conditions, _, _ := unstructured.NestedSlice(issuer.Object, "status", "conditions")
		for _, c := range conditions {
			if m, ok := c.(map[string]any); ok && m["type"] == "Ready" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("Issuer %s not Ready: %v", name, conditions)
	})
	return certPEM
}
