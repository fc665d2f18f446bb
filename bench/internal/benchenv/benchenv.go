// Package benchenv starts what the load tools share: a control plane that
// knows regcred's types and lets a benchmark, not the API server's
// in-flight limits, be the bottleneck.
package benchenv

import (
	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv/controlplane"
)

// ControlPlane starts kube-apiserver and etcd with regcred's types and
// room for 1,000 requests in flight (500 mutating), and opts.
func ControlPlane(opts ...controlplane.Option) (*controlplane.ControlPlane, error) {
	return controlplane.Start(append([]controlplane.Option{controlplane.WithSchemeAdder(v1alpha1.AddToScheme),
		controlplane.WithAPIServerArg("max-requests-inflight", "1000"), controlplane.WithAPIServerArg("max-mutating-requests-inflight", "500")}, opts...)...)
}
