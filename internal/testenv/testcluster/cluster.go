// Package testcluster runs a whole Kubernetes cluster on this machine for
// the end-to-end tests: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and one real node (a kubelet on containerd and runc, a CNI
// bridge, kube-proxy), built from the pinned Kubernetes module. A node
// changes the host (sysctls, iptables, cgroups, mounts), so the package
// also records the host before a cluster starts and restores it after,
// even when the harness that started it died (RestoreHost).
package testcluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/pki"
	"regcred.dev/regcred/internal/testenv"
)

// Cluster is a whole Kubernetes cluster on this machine: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, and one node —
// a kubelet on containerd and runc with a bridge CNI — with kube-proxy, all
// built from the pinned Kubernetes module. Pods run for real: the kubelet
// pulls their images, so a test sees what a user's kubelet would do.
//
// Pods reach the API server through the kubernetes Service, and the API
// server reaches Services' Pods (webhooks) directly by endpoint. Pod
// traffic never leaves the machine: forwarding off the bridge is dropped,
// and the Service range is routed to the host itself: kube-proxy's rules
// send Service traffic on to Pods (from Pods and from the host, where the
// kubelet's credential provider plugin runs), and the rest of the range
// ends at the host's own sockets.
//
// It needs root and cgroups. Stop restores the host; see hostState.
type Cluster struct {
	// Kubeconfig of a cluster administrator; never the user's own.
	Kubeconfig string
	Config     *rest.Config
	// Client knows the built-in types and regcred's.
	Client client.Client
	Scheme *runtime.Scheme
	// NodeName and NodeIP of the one node.
	NodeName string
	NodeIP   string
	// Dir holds every file of the cluster: certificates, configuration,
	// data and logs (NAME.log per program).
	Dir string

	// providerConfig and providerBinDir are the kubelet's image credential
	// provider flags, when set.
	providerConfig, providerBinDir string

	procs     []*process
	host      *hostState
	socket    string
	ctrBin    string
	certsDir  string
	started   time.Time
	NodeReady time.Duration
}

// Addresses of the cluster's virtual networks. Pod addresses exist only in
// network namespaces the kubelet makes; Service addresses only in
// kube-proxy's rules.
const (
	clusterPodCIDR     = "10.244.0.0/24"
	clusterServiceCIDR = "10.96.0.0/24"
	clusterServiceIP   = "10.96.0.1"
	clusterBridge      = "regcred0"
	clusterNodeName    = "regcred-node"
	// sandboxImage is what containerd runs as every Pod's sandbox (its
	// pinned sandbox image); it cannot be downloaded here, so the harness
	// imports its own.
	sandboxImage = "registry.k8s.io/pause:3.10"
)

// Components are the binaries `make tools` builds for a cluster:
// Kubernetes' own, and containerd 2 with its runc shim and CLI (Debian's
// containerd 1.6 cannot mount image volumes).
var Components = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl",
	"containerd", "containerd-shim-runc-v2", "ctr"}

// Check says why this machine cannot run a cluster, or nil.
func Check() error {
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, "not root (a kubelet node needs root)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
			problems = append(problems, "no cgroup filesystem at /sys/fs/cgroup")
		}
	}
	for _, name := range Components {
		if !testenv.Executable(filepath.Join(testenv.AssetsDir(), name)) {
			problems = append(problems, fmt.Sprintf("%s not in %s", name, testenv.AssetsDir()))
		}
	}
	for _, cmd := range []string{"etcd", "runc", "iptables-save", "iptables-restore", "ip"} {
		if _, err := exec.LookPath(cmd); err != nil {
			problems = append(problems, cmd+" not installed")
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if !testenv.Executable(filepath.Join("/usr/lib/cni", plugin)) {
			problems = append(problems, "CNI plugin /usr/lib/cni/"+plugin+" not installed")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("cannot run a real cluster here: %s; run `make tools` as root", strings.Join(problems, "; "))
	}
	return nil
}

// Option configures a cluster before it starts.
type Option func(*Cluster)

// WithCredentialProvider starts the kubelet with an image credential
// provider configuration (a CredentialProviderConfig file, which must
// exist) and the directory its plugins are looked up in at each pull.
func WithCredentialProvider(configFile, binDir string) Option {
	return func(c *Cluster) { c.providerConfig, c.providerBinDir = configFile, binDir }
}

// Start starts a cluster and returns when its node is Ready, its
// default ServiceAccount exists and regcred's CRDs are installed.
func Start(opts ...Option) (*Cluster, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	nodeIP, err := hostIP()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("/var/tmp", "regcred-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, NodeName: clusterNodeName, NodeIP: nodeIP, started: time.Now(),
		socket: filepath.Join(dir, "containerd", "containerd.sock")}
	for _, o := range opts {
		o(c)
	}
	c.ctrBin = c.asset("ctr")
	c.host, err = claimHost(dir, c.socket, clusterBridge, 30*time.Minute)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	// Time spent waiting for another cluster to stop is not start-up.
	c.started = time.Now()
	if err := c.start(); err != nil {
		stopErr := c.Stop()
		return nil, errors.Join(err, stopErr)
	}
	return c, nil
}

func (c *Cluster) start() error {
	if err := c.writePKI(); err != nil {
		return err
	}
	// Safety first: nothing a Pod sends leaves the machine.
	// A local route, not a blackhole: a blackhole fails the host's own
	// connect() before kube-proxy's OUTPUT rules could rewrite it.
	if out, err := exec.Command("ip", "route", "add", "local", clusterServiceCIDR, "dev", "lo").CombinedOutput(); err != nil {
		return fmt.Errorf("local route for %s: %v: %s", clusterServiceCIDR, err, out)
	}
	c.host.LocalRoute = clusterServiceCIDR
	if err := c.host.save(); err != nil {
		return err
	}
	if out, err := exec.Command("iptables", "-I", "FORWARD", "-i", clusterBridge, "!", "-o", clusterBridge, "-j", "DROP").CombinedOutput(); err != nil {
		return fmt.Errorf("keep Pod traffic on the machine: %v: %s", err, out)
	}

	ports, err := freePorts(8)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort, kcmPort, schedPort, kubeletPort, kubeletHealthz, proxyMetrics := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7]

	etcdBin, _ := exec.LookPath("etcd")
	if _, err := c.run("etcd", etcdBin,
		"--data-dir", filepath.Join(c.fastDir(), "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", etcdPeer),
		"--quota-backend-bytes", "4294967296"); err != nil {
		return err
	}

	pkiDir := filepath.Join(c.Dir, "pki")
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	api, err := c.run("kube-apiserver", c.asset("kube-apiserver"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--bind-address", "0.0.0.0", "--secure-port", strconv.Itoa(apiPort),
		"--advertise-address", c.NodeIP,
		"--tls-cert-file", p("apiserver.crt"), "--tls-private-key-file", p("apiserver.key"),
		"--client-ca-file", p("ca.crt"),
		"--kubelet-client-certificate", p("apiserver-kubelet-client.crt"), "--kubelet-client-key", p("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types", "InternalIP,Hostname",
		"--service-account-key-file", p("sa.pub"), "--service-account-signing-key-file", p("sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range", clusterServiceCIDR,
		"--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction",
		"--allow-privileged=true", "--enable-aggregator-routing=true",
		"--endpoint-reconciler-type", "lease")
	if err != nil {
		return err
	}
	if err := c.writeKubeconfigs(apiPort); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 200, 400
	c.Config = cfg
	if err := api.waitFor(2*time.Minute, "/readyz", func() error { return c.getOK(cfg, "/readyz") }); err != nil {
		return err
	}
	c.Scheme = runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(c.Scheme); err != nil {
		return err
	}
	if err := apiextensionsv1.AddToScheme(c.Scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(c.Scheme); err != nil {
		return err
	}
	if c.Client, err = client.New(cfg, client.Options{Scheme: c.Scheme}); err != nil {
		return err
	}
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{testenv.CRDDir()}, ErrorIfPathMissing: true}); err != nil {
		return fmt.Errorf("install CRDs: %w", err)
	}

	if _, err := c.run("kube-controller-manager", c.asset("kube-controller-manager"),
		"--kubeconfig", c.kubeconfigFor("controller-manager"),
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(kcmPort),
		"--use-service-account-credentials=false", "--leader-elect=false",
		"--service-account-private-key-file", p("sa.key"), "--root-ca-file", p("ca.crt"),
		"--cluster-signing-cert-file", p("ca.crt"), "--cluster-signing-key-file", p("ca.key"),
		"--controllers", "*", "--allocate-node-cidrs=false"); err != nil {
		return err
	}
	if _, err := c.run("kube-scheduler", c.asset("kube-scheduler"),
		"--kubeconfig", c.kubeconfigFor("scheduler"),
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(schedPort), "--leader-elect=false"); err != nil {
		return err
	}

	if err := c.startContainerd(); err != nil {
		return err
	}
	if err := c.importSandboxImage(); err != nil {
		return err
	}
	kubeletArgs := []string{"--config", c.writeKubeletConfig(kubeletPort, kubeletHealthz),
		"--kubeconfig", c.kubeconfigFor("kubelet"),
		"--root-dir", filepath.Join(c.Dir, "kubelet"),
		"--cert-dir", filepath.Join(c.Dir, "kubelet", "pki"),
		"--hostname-override", c.NodeName, "--node-ip", c.NodeIP}
	if c.providerConfig != "" {
		kubeletArgs = append(kubeletArgs, "--image-credential-provider-config", c.providerConfig,
			"--image-credential-provider-bin-dir", c.providerBinDir)
	}
	if _, err := c.run("kubelet", c.asset("kubelet"), kubeletArgs...); err != nil {
		return err
	}
	if _, err := c.run("kube-proxy", c.asset("kube-proxy"),
		"--config", c.writeKubeProxyConfig(proxyMetrics)); err != nil {
		return err
	}
	return c.waitReady()
}

// waitReady waits for the node to be Ready and the default namespace's
// ServiceAccount to exist.
func (c *Cluster) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kubelet := c.proc("kubelet")
	if err := kubelet.waitFor(3*time.Minute, "a Ready node", func() error {
		var node corev1.Node
		if err := c.Client.Get(ctx, client.ObjectKey{Name: c.NodeName}, &node); err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node Ready=%s: %s", cond.Status, cond.Message)
			}
		}
		return fmt.Errorf("node has no Ready condition yet")
	}); err != nil {
		return err
	}
	c.NodeReady = time.Since(c.started)
	return c.proc("kube-controller-manager").waitFor(2*time.Minute, "the default ServiceAccount", func() error {
		return c.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default"}, &corev1.ServiceAccount{})
	})
}

// Stop stops every program of the cluster by PID, in order, removes its
// Pods' sandboxes and restores the host.
func (c *Cluster) Stop() error {
	if c == nil {
		return nil
	}
	var errs []error
	for _, name := range []string{"kube-proxy", "kube-scheduler", "kube-controller-manager", "kubelet"} {
		c.proc(name).stop(10 * time.Second)
	}
	if c.proc("containerd") != nil {
		if done, _ := c.proc("containerd").exited(); !done {
			errs = append(errs, c.removeSandboxes())
		}
	}
	for _, name := range []string{"containerd", "kube-apiserver", "etcd"} {
		c.proc(name).stop(10 * time.Second)
	}
	// The cluster's directory goes with the host's restoration; its logs
	// are kept where REGCRED_CLUSTER_LOGS says.
	if keep := os.Getenv("REGCRED_CLUSTER_LOGS"); keep != "" {
		if err := os.MkdirAll(keep, 0o755); err == nil {
			for _, p := range c.procs {
				if b, err := os.ReadFile(p.logPath); err == nil {
					_ = os.WriteFile(filepath.Join(keep, p.name+".log"), b, 0o644)
				}
			}
		}
	}
	if c.host != nil {
		errs = append(errs, c.host.release())
	} else {
		errs = append(errs, os.RemoveAll(c.Dir))
	}
	return errors.Join(errs...)
}

// Log returns the end of a program's log (etcd, kube-apiserver, kubelet,
// containerd, ...), for a failing test to show.
func (c *Cluster) Log(name string, lines int) string {
	if p := c.proc(name); p != nil {
		return p.tail(lines)
	}
	return ""
}

func (c *Cluster) run(name, bin string, args ...string) (*process, error) {
	p, err := startProcess(c.logDir(), name, bin, args...)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

func (c *Cluster) proc(name string) *process {
	for _, p := range c.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

func (c *Cluster) asset(name string) string { return filepath.Join(testenv.AssetsDir(), name) }

func (c *Cluster) logDir() string {
	d := filepath.Join(c.Dir, "logs")
	_ = os.MkdirAll(d, 0o700)
	return d
}

// fastDir is for etcd's data: a tmpfs when there is one. It lies under the
// cluster directory's name so that restoring the host finds it.
func (c *Cluster) fastDir() string {
	d := filepath.Join(c.Dir, "fast")
	_ = os.MkdirAll(d, 0o700)
	if testenv.FastTempDir() == "/dev/shm" {
		_ = syscall.Mount("tmpfs", d, "tmpfs", 0, "size=4g,mode=0700")
	}
	return d
}

// getOK GETs path on the API server with cfg's credentials.
func (c *Cluster) getOK(cfg *rest.Config, path string) error {
	tc, err := rest.TransportFor(cfg)
	if err != nil {
		return err
	}
	req, _ := http.NewRequest(http.MethodGet, cfg.Host+path, nil)
	resp, err := (&http.Client{Transport: tc, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return nil
}

// writePKI makes the cluster's CA and every certificate and key its
// programs use, and the ServiceAccount signing key.
func (c *Cluster) writePKI() error {
	dir := filepath.Join(c.Dir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := pki.NewCA("regcred-test-cluster-ca", 24*time.Hour)
	if err != nil {
		return err
	}
	write := func(name string, kp *pki.KeyPair) error {
		if err := os.WriteFile(filepath.Join(dir, name+".crt"), kp.CertPEM, 0o600); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name+".key"), kp.KeyPEM, 0o600)
	}
	if err := write("ca", ca); err != nil {
		return err
	}
	serving, err := ca.IssueServing([]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local", "localhost", "127.0.0.1", c.NodeIP, clusterServiceIP}, 24*time.Hour)
	if err != nil {
		return err
	}
	if err := write("apiserver", serving); err != nil {
		return err
	}
	for name, subject := range map[string][2]string{
		"admin": {"regcred-test-admin", "system:masters"},
		// With --use-service-account-credentials=false every controller
		// acts as the manager itself, which its own role does not cover.
		"controller-manager":       {"system:kube-controller-manager", "system:masters"},
		"scheduler":                {"system:kube-scheduler", ""},
		"kubelet":                  {"system:node:" + c.NodeName, "system:nodes"},
		"kube-proxy":               {"system:kube-proxy", ""},
		"apiserver-kubelet-client": {"kube-apiserver-kubelet-client", "system:masters"},
	} {
		var orgs []string
		if subject[1] != "" {
			orgs = []string{subject[1]}
		}
		kp, err := ca.IssueClient(subject[0], orgs, 24*time.Hour)
		if err != nil {
			return err
		}
		if err := write(name, kp); err != nil {
			return err
		}
	}
	// The ServiceAccount token key: any key pair will do; a CA's is one.
	sa, err := pki.NewCA("service-accounts", 24*time.Hour)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), sa.KeyPEM, 0o600); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(sa.Key.Public())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "sa.pub"), pemBlock("PUBLIC KEY", pub), 0o600)
}

// writeKubeconfigs writes a kubeconfig per identity, all pointing at the
// API server by the node's address.
func (c *Cluster) writeKubeconfigs(apiPort int) error {
	server := fmt.Sprintf("https://%s", net.JoinHostPort(c.NodeIP, strconv.Itoa(apiPort)))
	for _, name := range []string{"admin", "controller-manager", "scheduler", "kubelet", "kube-proxy"} {
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["regcred-test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: filepath.Join(c.Dir, "pki", "ca.crt")}
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificate: filepath.Join(c.Dir, "pki", name+".crt"), ClientKey: filepath.Join(c.Dir, "pki", name+".key")}
		cfg.Contexts["regcred-test"] = &clientcmdapi.Context{Cluster: "regcred-test", AuthInfo: name}
		cfg.CurrentContext = "regcred-test"
		if err := clientcmd.WriteToFile(*cfg, c.kubeconfigFor(name)); err != nil {
			return err
		}
	}
	c.Kubeconfig = c.kubeconfigFor("admin")
	return nil
}

func (c *Cluster) kubeconfigFor(name string) string {
	return filepath.Join(c.Dir, "kubeconfig-"+name)
}

// hostIP is the machine's first non-loopback IPv4 address: the kubelet
// refuses a loopback node address.
func hostIP() (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 || iface.Name == clusterBridge {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				return ipn.IP.String(), nil
			}
		}
	}
	return "", errors.New("no non-loopback IPv4 address for the node")
}

// freePorts returns n distinct free TCP ports on loopback.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// Require skips the test (locally) or fails it (under Required) when
// this machine cannot run a cluster, saying why; for tests that start
// clusters of their own rather than the Suite's.
func Require(t testing.TB) {
	t.Helper()
	if err := Check(); err != nil {
		if testenv.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}
