package testcluster

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/testenv/fixtures"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// startContainerd writes containerd's configuration — everything under the
// cluster directory, the CRI plugin set up as REAL-NODE.md found works on
// these machines (cgroupfs, restricted OOM score) — and starts it.
func (c *Cluster) startContainerd() error {
	base := filepath.Join(c.Dir, "containerd")
	c.certsDir = filepath.Join(base, "certs.d")
	cniConf := filepath.Join(c.Dir, "cni", "net.d")
	for _, d := range []string{base, c.certsDir, cniConf, filepath.Join(c.Dir, "cni", "ipam")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	conflist := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "regcred-test",
  "plugins": [{
    "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}],
             "dataDir": %q}
  }]
}
`, clusterBridge, clusterPodCIDR, filepath.Join(c.Dir, "cni", "ipam"))
	if err := os.WriteFile(filepath.Join(cniConf, "10-regcred.conflist"), []byte(conflist), 0o600); err != nil {
		return err
	}
	// containerd 2's configuration format (version 3). Nothing may read or
	// write the host's own containerd paths: no imports from /etc, no NRI
	// socket under /var/run, no image verifiers from /opt, no AppArmor
	// profile loaded into the host's kernel, the shim by its path rather
	// than the first on PATH (Debian's 1.6 may be installed).
	config := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
imports = []
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri", "io.containerd.image-verifier.v1.bindir"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %[6]q
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = %[9]q

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  cdi_spec_dirs = []
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = %[10]q
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[7]q
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = %[8]q

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.transfer.v1.local"]
  config_path = %[9]q
`, filepath.Join(base, "root"), filepath.Join(base, "state"), c.socket, c.socket+".ttrpc",
		filepath.Join(base, "opt"), sandboxImage, filepath.Join(base, "runc"), cniConf, c.certsDir,
		c.asset("containerd-shim-runc-v2"))
	path := filepath.Join(base, "config.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return err
	}
	p, err := c.run("containerd", c.asset("containerd"), "--config", path)
	if err != nil {
		return err
	}
	return p.waitFor(time.Minute, "its CRI socket", func() error {
		return exec.Command(c.ctrBin, "--address", c.socket, "version").Run()
	})
}

// importSandboxImage builds the harness's own pause image and imports it as
// the sandbox image containerd expects.
func (c *Cluster) importSandboxImage() error {
	tar := filepath.Join(c.Dir, "pause.tar")
	if err := fixtures.WriteImageTarball(tar, sandboxImage); err != nil {
		return err
	}
	return c.ctr("images", "import", tar)
}

// ctr runs containerd's CLI against the cluster's containerd, in the CRI's
// namespace.
func (c *Cluster) ctr(args ...string) error {
	out, err := exec.Command(c.ctrBin, append([]string{"--address", c.socket, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr %v: %v: %s", args, err, out)
	}
	return nil
}

// removeSandboxes stops and removes every Pod sandbox through the CRI, so
// containerd tears down their containers, shims and networks (CNI DEL).
func (c *Cluster) removeSandboxes() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+c.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list Pod sandboxes: %w", err)
	}
	var errs []error
	for _, sb := range list.Items {
		if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stop sandbox %s/%s: %w", sb.Metadata.Namespace, sb.Metadata.Name, err))
			continue
		}
		if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove sandbox %s/%s: %w", sb.Metadata.Namespace, sb.Metadata.Name, err))
		}
	}
	return errors.Join(errs...)
}

// writeKubeletConfig writes the KubeletConfiguration; see REAL-NODE.md for
// why each unusual setting is there.
func (c *Cluster) writeKubeletConfig(port, healthzPort int) string {
	path := filepath.Join(c.Dir, "kubelet-config.yaml")
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine mounts cgroup v1 controllers.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
containerRuntimeEndpoint: unix://%[1]s
podLogsDir: %[2]s
address: %[3]s
port: %[4]d
healthzBindAddress: 127.0.0.1
healthzPort: %[5]d
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[6]s}
authorization:
  mode: Webhook
serializeImagePulls: false
resolvConf: /etc/resolv.conf
`, c.socket, filepath.Join(c.Dir, "pod-logs"), c.NodeIP, port, healthzPort, filepath.Join(c.Dir, "pki", "ca.crt"))
	_ = os.WriteFile(path, []byte(config), 0o600)
	return path
}

// writeKubeProxyConfig writes kube-proxy's configuration: iptables mode,
// and none of the host-wide conntrack sysctls it would otherwise raise.
func (c *Cluster) writeKubeProxyConfig(metricsPort int) string {
	path := filepath.Join(c.Dir, "kube-proxy-config.yaml")
	config := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: %[1]s
hostnameOverride: %[2]s
clientConnection:
  kubeconfig: %[3]s
metricsBindAddress: 127.0.0.1:%[4]d
healthzBindAddress: ""
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, clusterPodCIDR, c.NodeName, c.kubeconfigFor("kube-proxy"), metricsPort)
	_ = os.WriteFile(path, []byte(config), 0o600)
	return path
}

// TrustRegistry lets the node's containerd pull from a registry of the
// harness: over TLS with the harness's CA.
func (c *Cluster) TrustRegistry(r *testregistry.Registry) error { return c.TrustHost(r.Host, r.CAFile) }

// TrustHost makes the node's containerd reach host over TLS, trusting the
// CAs of caFile. Both entries of the hosts.toml carry the CA: containerd
// tries the [host] entry, then the server entry whenever the first answers
// "not found", and without the CA there the kubelet would report that
// fallback's x509 error instead of the registry's 404.
func (c *Cluster) TrustHost(host, caFile string) error {
	dir := filepath.Join(c.certsDir, host)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	hosts := fmt.Sprintf("server = %q\nca = %q\n\n[host.%q]\n  ca = %q\n", "https://"+host, caFile, "https://"+host, caFile)
	return os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o600)
}

// RunTestPod runs a Pod of the node's own sandbox image (no pull) in the
// default namespace and waits until it is Running: a check that the node
// runs containers, networks and volumes.
func (c *Cluster) RunTestPod() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "harness-check"}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: new(int64),
		Containers:                    []corev1.Container{{Name: "check", Image: sandboxImage, ImagePullPolicy: corev1.PullNever}},
	}}
	if err := c.Client.Create(ctx, p); err != nil {
		return err
	}
	for {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		if p.Status.Phase == corev1.PodRunning {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod harness-check not Running: %s %v", p.Status.Phase, p.Status.ContainerStatuses)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// KillContainer kills a container of the node with SIGKILL, as the kernel's
// OOM killer or a crash would stop it: no preStop hook, no SIGTERM, no
// chance to release a lease. containerID is a Pod status's
// "containerd://ID" or the bare ID. The kubelet restarts it per the Pod's
// restartPolicy.
func (c *Cluster) KillContainer(containerID string) error {
	id := strings.TrimPrefix(containerID, "containerd://")
	if id == "" || strings.ContainsAny(id, "/ ") {
		return fmt.Errorf("container ID %q", containerID)
	}
	return c.ctr("tasks", "kill", "--signal", "SIGKILL", id)
}
