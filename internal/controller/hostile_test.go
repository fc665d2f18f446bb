package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/egress"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testserver"
)

// tenantAllowedNetwork is the suite manager's --tenant-allow-private-networks:
// the test registries and clouds listen on 127.0.0.1, so tenants may reach
// that one address. The guard is by address, so a page on 127.0.0.2 —
// loopback too, and not allowed — is what a tenant must not reach.
const tenantAllowedNetwork = "127.0.0.1/32"

const pageMarker = "INTERNAL-ADMIN-PAGE-7f3c"

// internalPage serves a page with pageMarker on 127.0.0.2, over TLS with a
// CA the manager trusts (so an unguarded probe reads and quotes it) or
// over plain HTTP, and counts the requests that reach it.
func internalPage(t *testing.T, useTLS bool) (string, *atomic.Int64) {
	t.Helper()
	hits := &atomic.Int64{}
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no second loopback address: %v", err)
	}
	page := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprintf(w, "<html><body>%s: database password hunter2</body></html>", pageMarker)
	})
	if !useTLS {
		srv := httptest.NewUnstartedServer(page)
		_ = srv.Listener.Close()
		srv.Listener = l
		srv.Start()
		t.Cleanup(srv.Close)
		return l.Addr().String(), hits
	}
	tlsSrv, err := testserver.StartTLS(page, l, "internal page CA", "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tlsSrv.Close)
	cloudTrust.Add(tlsSrv.CA.CertPEM)
	return l.Addr().String(), hits
}

// TestTenantProbeOfPrivatePage: a RegistryCredential whose spec.verify
// names a page on the manager's loopback (over HTTPS, and over plain HTTP
// with an http:// registry key) gets Verified=False, reason Blocked, with
// the class only: no request reaches the page and nothing of it is in the
// status or the Events.
func TestTenantProbeOfPrivatePage(t *testing.T) {
	c := startManager(t)
	for _, tc := range []struct {
		name, scheme string
		tls          bool
	}{{"https", "", true}, {"plain-http", "http://", false}} {
		t.Run(tc.name, func(t *testing.T) {
			host, hits := internalPage(t, tc.tls)
			ns := newNamespace(t, c, "hostile", nil)
			basic := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "robot"}, Type: corev1.SecretTypeBasicAuth,
				Data: map[string][]byte{"username": []byte("robot"), "password": []byte("tenant-pass")}}
			if err := c.Create(bg, basic); err != nil {
				t.Fatal(err)
			}
			rc := &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"}}
			rc.Spec.Registries = []string{tc.scheme + host}
			rc.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: "robot"}
			rc.Spec.Verify = &v1alpha1.Verify{Image: host + "/admin/page:v1", Interval: metav1.Duration{Duration: time.Hour}}
			if err := c.Create(bg, rc); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { deleteAndWait(t, c, rc) })
			var got v1alpha1.RegistryCredential
			testenv.Eventually(t, wait, func(ctx context.Context) error {
				if err := c.Get(ctx, client.ObjectKeyFromObject(rc), &got); err != nil {
					return err
				}
				cond := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionVerified)
				if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != v1alpha1.ReasonBlocked {
					return fmt.Errorf("Verified %+v, want False/%s", cond, v1alpha1.ReasonBlocked)
				}
				return nil
			})
			cond := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionVerified)
			if !strings.Contains(cond.Message, egress.ErrBlocked.Error()) || len(cond.Message) > 1024 {
				t.Errorf("message %q: want the class, at most 1 KiB", cond.Message)
			}
			status, _ := json.Marshal(got.Status)
			var events string
			testenv.Eventually(t, wait, func(ctx context.Context) error {
				var err error
				if events, err = eventsFor(ctx, c, rc.Name); err != nil {
					return err
				}
				if !strings.Contains(events, "Verify"+v1alpha1.ReasonBlocked) {
					return fmt.Errorf("no Verify%s Event yet: %s", v1alpha1.ReasonBlocked, events)
				}
				return nil
			})
			for _, leak := range []string{pageMarker, "hunter2", "tenant-pass"} {
				if strings.Contains(string(status), leak) || strings.Contains(events, leak) {
					t.Errorf("%q reached the status or Events:\nstatus %s\nevents %s", leak, status, events)
				}
			}
			if n := hits.Load(); n != 0 {
				t.Errorf("%d requests reached the page", n)
			}
		})
	}
}
