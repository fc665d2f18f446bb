// Package testenv holds what every test package of regcred shares, written
// once: where the source tree, the CRDs and the test binaries are
// (RepoRoot, CRDDir, AssetsDir, KubeVersion), whether missing test
// infrastructure fails or skips (Required, Tool, SkipShort), waiting for
// a condition (Eventually), golden files with the one -update flag
// (Golden), and a registry user's .dockerconfigjson (DockerConfigJSON).
//
// The real parts tests run against live in subpackages, one job each:
// controlplane (kube-apiserver and etcd through envtest), testcluster (a
// whole cluster with a kubelet node on containerd, and restoring the host
// after it), testregistry (a CNCF distribution registry with basic or
// token auth), testserver (throwaway and hostile HTTPS servers with a CA
// of their own), fixtures (runnable test images, the release tool),
// fakecloud (the clouds' token services) and testsuite (one of each part
// per test binary, started on first use).
package testenv
