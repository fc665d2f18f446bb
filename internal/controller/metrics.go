package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

	credentialVerified = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regcred_credential_verified",
		Help: "1 when the last spec.verify probe of the credential succeeded, else 0; absent without spec.verify.",
	}, []string{"kind", "namespace", "name"})

	rateLimitRemaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regcred_registry_rate_limit_remaining",
		Help: "Pulls left that a registry announced (Docker Hub's ratelimit-remaining) at the last spec.verify probe, by registry.",
	}, []string{"registry"})

	pullFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regcred_image_pull_failures_total",
		Help: "Image pulls the kubelet reported as failed, from its Events, by registry (a registry key of a regcred credential, \"other\" for the rest, \"none\" for a missing pull Secret) and reason (regcred doctor's causes).",
	}, []string{"registry", "reason"})

	imagePulls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regcred_image_pulls_total",
		Help: "Image pulls from registries the kubelet reported, from its Events, by registry (as regcred_image_pull_failures_total) and result: success (\"Successfully pulled image\") or failure (\"Failed to pull image\"). Images already on the node, missing Secrets and invalid names are not pulls.",
	}, []string{"registry", "result"})
)

func init() {
	metrics.Registry.MustRegister(credentialReady, credentialNamespaces, syncErrors, syncWrites, credentialExpiry,
		tokenRequests, tokenRequestErrors, credentialVerified, rateLimitRemaining, pullFailures, imagePulls)
}

// setVerifiedMetric reports the Verified condition; nil (no spec.verify)
// removes the series.
func setVerifiedMetric(c credential.Key, cond *metav1.Condition) {
	if cond == nil {
		credentialVerified.DeleteLabelValues(string(c.Kind), c.Namespace, c.Name)
		return
	}
	credentialVerified.WithLabelValues(string(c.Kind), c.Namespace, c.Name).Set(boolGauge(cond.Status))
}

// boolGauge is 1 for a True condition, else 0.
func boolGauge(s metav1.ConditionStatus) float64 {
	if s == metav1.ConditionTrue {
		return 1
	}
	return 0
}

// deleteCredentialMetrics removes the series of a deleted credential.
func deleteCredentialMetrics(c credential.Key) {
	credentialReady.DeleteLabelValues(string(c.Kind), c.Namespace, c.Name)
	credentialExpiry.DeleteLabelValues(string(c.Kind), c.Namespace, c.Name)
	credentialVerified.DeleteLabelValues(string(c.Kind), c.Namespace, c.Name)
	for _, s := range []string{"desired", "synced", "failed"} {
		credentialNamespaces.DeleteLabelValues(string(c.Kind), c.Namespace, c.Name, s)
	}
}
