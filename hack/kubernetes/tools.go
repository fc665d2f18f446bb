//go:build tools

// Package tools pins the Kubernetes commands the test harness runs (a whole
// cluster: control plane, controllers, scheduler, a kubelet node and
// kube-proxy) and kubectl, so `go mod tidy` keeps their dependencies in
// go.sum.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
