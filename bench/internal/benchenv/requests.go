package benchenv

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/bench/internal/parallel"
)

// RoundTripperFunc is a function as an http.RoundTripper, for the
// counting wrappers the tools put on a client's transport.
type RoundTripperFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f.
func (f RoundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Describe names an API request by verb and resource: "list pods", "get
// secrets", "watch serviceaccounts", "POST tokenreviews", "discovery".
func Describe(req *http.Request) string {
	segs := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case len(segs) <= 2 || (segs[0] == "apis" && len(segs) <= 3):
		return "discovery"
	case segs[0] == "api":
		segs = segs[2:]
	default:
		segs = segs[3:]
	}
	if len(segs) >= 3 && segs[0] == "namespaces" {
		segs = segs[2:]
	}
	verb := "list"
	if len(segs) > 1 {
		verb = "get"
	}
	if req.URL.Query().Get("watch") == "true" {
		verb = "watch"
	}
	if req.Method != http.MethodGet {
		verb = req.Method
	}
	if len(segs) == 0 {
		return verb + " ?"
	}
	return verb + " " + segs[0]
}

// Namespaces creates regcred's namespace and n namespaces bench-0000...
// labelled bench=yes, each with a default ServiceAccount when
// serviceAccounts (a control plane has no controller-manager to make
// them), and returns their names.
func Namespaces(ctx context.Context, c client.Client, regcredNS string, n int, serviceAccounts bool) ([]string, error) {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: regcredNS}}); err != nil {
		return nil, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%04d", i)
	}
	return names, parallel.Each(16, names, func(ns string) error {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"bench": "yes"}}}); err != nil {
			return err
		}
		if !serviceAccounts {
			return nil
		}
		return c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}})
	})
}
