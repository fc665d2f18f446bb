package nodecreds

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regcred_node_credential_requests_total",
		Help: "Kubelet credential requests the broker answered, by result: served, empty (no credential for the image and ServiceAccount), unauthenticated, forbidden, rate_limited, invalid, unavailable, error.",
	}, []string{"result"})
	latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "regcred_node_credential_request_duration_seconds",
		Help:    "Time to answer a kubelet credential request, by how its token was checked: cached, api (a TokenReview), none.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"review"})
)

func init() {
	metrics.Registry.MustRegister(requests, latency)
}
