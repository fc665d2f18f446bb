//go:build tools

// Package tools pins containerd, its runc shim and ctr: the test
// cluster's node runs them in place of Debian's containerd 1.6, which
// cannot mount image volumes.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
