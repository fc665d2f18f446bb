package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"regcred.dev/regcred/internal/credential"
)

// Metrics are registered on controller-runtime's registry, served on the
// manager's metrics endpoint. Reconcile duration per controller is
// controller-runtime's own controller_runtime_reconcile_time_seconds.
var (
	credentialReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regcred_credential_ready",
		Help: "1 when the credential's Ready condition is True, else 0.",
	}, []string{"kind", "namespace", "name"})

	credentialNamespaces = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regcred_credential_namespaces",
		Help: "Namespaces of a credential by state: desired, synced, failed.",
	}, []string{"kind", "namespace", "name", "state"})

	syncErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regcred_sync_errors_total",
		Help: "Failed writes while syncing Secrets and ServiceAccounts, by operation.",
	}, []string{"operation"})

	syncWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regcred_sync_writes_total",
		Help: "Writes made while syncing, by operation: a resync with nothing to do makes none.",
	}, []string{"operation"})

	credentialExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regcred_credential_expiry_timestamp_seconds",
		Help: "When the short-lived token of a cloud or plugin credential expires, as a Unix time.",
	}, []string{"kind", "namespace", "name"})

	tokenRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regcred_token_requests_total",
		Help: "Token requests to clouds and credential provider plugins, by source kind.",
	}, []string{"source"})

	tokenRequestErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regcred_token_request_errors_total",
		Help: "Failed token requests, by source kind and reason (TokenRequestFailed, IdentityNotFound, AccessDenied, Throttled, SourceInvalid).",
	}, []string{"source", "reason"})
)

func init() {
	metrics.Registry.MustRegister(credentialReady, credentialNamespaces, syncErrors, syncWrites, credentialExpiry, tokenRequests, tokenRequestErrors)
}

func deleteCredentialMetrics(c credential.Key) {
	credentialReady.DeleteLabelValues(string(c.Kind), c.Namespace, c.Name)
	credentialExpiry.DeleteLabelValues(string(c.Kind), c.Namespace, c.Name)
	credentialVerified.DeleteLabelValues(string(c.Kind), c.Namespace, c.Name)
	for _, s := range []string{"desired", "synced", "failed"} {
		credentialNamespaces.DeleteLabelValues(string(c.Kind), c.Namespace, c.Name, s)
	}
}
