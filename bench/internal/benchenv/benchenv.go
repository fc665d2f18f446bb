// Package benchenv starts what the load tools share: a control plane that
// knows regcred's types and lets a benchmark, not the API server's
// in-flight limits, be the bottleneck.
package benchenv

import (
	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv"
)

// ControlPlane starts kube-apiserver and etcd with regcred's types and
// room for 1,000 requests in flight (500 mutating).
func ControlPlane() (*testenv.ControlPlane, error) {
	return testenv.StartControlPlane(testenv.WithSchemeAdder(v1alpha1.AddToScheme),
		testenv.WithAPIServerArg("max-requests-inflight", "1000"), testenv.WithAPIServerArg("max-mutating-requests-inflight", "500"))
}
