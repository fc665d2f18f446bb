// Package nodeagent is `regcred node-agent`, the DaemonSet's process on
// every node: it installs regcred's own binary as the kubelet's credential
// provider plugin and keeps the plugin's configuration directory (broker
// address, TLS server name, CA) in step with the ConfigMap the manager
// publishes, mounted as a volume. It needs no API access.
//
// Every file is replaced atomically (a temporary file in the same
// directory, then rename), so the kubelet, which runs the plugin at any
// moment, sees the old file or the new one, never half of one.
package nodeagent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"regcred.dev/regcred/internal/nodecreds"
)

const (
	// DefaultSourceDir is where the DaemonSet mounts the ConfigMap.
	DefaultSourceDir = "/etc/regcred/node-credentials"
	// DefaultInterval is how often the agent checks its files.
	DefaultInterval = 10 * time.Second
)

// Options are the node agent's flags.
type Options struct {
	// PluginDir is the kubelet's --image-credential-provider-bin-dir as
	// mounted in the Pod (required, must exist).
	PluginDir string
	// ConfigDir is the plugin's configuration directory as mounted
	// (default nodecreds.DefaultConfigDir); created when missing.
	ConfigDir string
	// SourceDir holds the ConfigMap's keys (default DefaultSourceDir).
	SourceDir string
	// Server is the broker's URL; or ServiceEnv names the Service whose
	// PREFIX_SERVICE_HOST and PREFIX_SERVICE_PORT give it. Exactly one.
	Server     string
	ServiceEnv string
	// Interval between passes (default DefaultInterval).
	Interval time.Duration
	// Once: one pass, then return its error.
	Once bool
	// Executable is the binary to install (default os.Executable()).
	Executable string
	// Getenv reads ServiceEnv's variables (default os.Getenv).
	Getenv func(string) string
	// Logf reports what changed and what failed (default: nothing).
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() Options {
	if o.ConfigDir == "" {
		o.ConfigDir = nodecreds.DefaultConfigDir
	}
	if o.SourceDir == "" {
		o.SourceDir = DefaultSourceDir
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// Validate checks the options that do not depend on the node.
func (o Options) Validate() error {
	if o.PluginDir == "" {
		return errors.New("--plugin-dir is required: the kubelet's --image-credential-provider-bin-dir as mounted in this Pod")
	}
	if (o.Server == "") == (o.ServiceEnv == "") {
		return errors.New("give exactly one of --server or --service-env")
	}
	if o.Server != "" {
		if err := checkServer(o.Server); err != nil {
			return err
		}
	}
	if o.Interval < 0 {
		return fmt.Errorf("--interval %s must be positive", o.Interval)
	}
	return nil
}

// Agent holds what one pass learnt for the next, so that a pass that
// finds everything current reads small files only.
type Agent struct {
	opts Options
	// srcSum is the installed executable's digest, read once: it does
	// not change while the process runs.
	srcSum []byte
	// dst is the plugin file as last verified equal to the executable;
	// a stat that still matches skips reading it again.
	dst os.FileInfo
}

// New checks opts and returns an agent.
func New(opts Options) (*Agent, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if opts.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find regcred's own executable: %v", err)
		}
		opts.Executable = exe
	}
	return &Agent{opts: opts}, nil
}

// Run passes until ctx ends (nil then), or once with Once. A failed pass
// is logged and retried at the next interval: a ConfigMap not published
// yet is normal at install time.
func Run(ctx context.Context, opts Options) error {
	a, err := New(opts)
	if err != nil {
		return err
	}
	if a.opts.Once {
		_, err := a.Sync()
		return err
	}
	t := time.NewTicker(a.opts.Interval)
	defer t.Stop()
	for {
		if _, err := a.Sync(); err != nil {
			a.opts.Logf("%v", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sync makes one pass and returns the paths it replaced. It does all it
// can: a missing CA does not stop the binary's install.
func (a *Agent) Sync() (changed []string, err error) {
	o := a.opts
	var errs []error
	if p, ch, err := a.installPlugin(); err != nil {
		errs = append(errs, err)
	} else if ch {
		changed = append(changed, p)
		o.Logf("installed %s", p)
	}
	if err := os.MkdirAll(o.ConfigDir, 0o755); err != nil {
		errs = append(errs, fmt.Errorf("create the config dir: %v", err))
		return changed, joinOneLine(errs)
	}
	for _, f := range []struct {
		name string
		get  func() ([]byte, error)
	}{
		{nodecreds.ServerFile, a.server},
		{nodecreds.ServerNameFile, a.serverName},
		{nodecreds.CAFile, a.ca},
	} {
		content, err := f.get()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p := filepath.Join(o.ConfigDir, f.name)
		ch, err := writeIfChanged(p, content, 0o644)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ch {
			changed = append(changed, p)
			o.Logf("wrote %s", p)
		}
	}
	return changed, joinOneLine(errs)
}

func (a *Agent) server() ([]byte, error) {
	s := a.opts.Server
	if s == "" {
		prefix := a.opts.ServiceEnv
		host, port := a.opts.Getenv(prefix+"_SERVICE_HOST"), a.opts.Getenv(prefix+"_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, fmt.Errorf("%s_SERVICE_HOST and %s_SERVICE_PORT are not both set: is the Service in this namespace, and was the Pod created after it?", prefix, prefix)
		}
		s = "https://" + net.JoinHostPort(host, port)
		if err := checkServer(s); err != nil {
			return nil, err
		}
	}
	return []byte(strings.TrimRight(s, "/") + "\n"), nil
}

func (a *Agent) serverName() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(a.opts.SourceDir, nodecreds.ServerNameFile))
	if errors.Is(err, os.ErrNotExist) {
		// Registered by URL: nothing to verify but the address.
		return []byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the server name: %v", err)
	}
	name := strings.TrimSpace(string(b))
	if strings.ContainsAny(name, " \t\r\n/:") {
		return nil, fmt.Errorf("%s holds %q, not a DNS name", filepath.Join(a.opts.SourceDir, nodecreds.ServerNameFile), name)
	}
	if name == "" {
		return []byte{}, nil
	}
	return []byte(name + "\n"), nil
}

// ca is the source's CA bundle, refused unless it holds certificates: a
// garbage file would make every pull on the node fail.
func (a *Agent) ca() ([]byte, error) {
	p := filepath.Join(a.opts.SourceDir, nodecreds.CAFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist yet: the manager publishes it in the ConfigMap %s once its webhook certificate is ready", p, nodecreds.ConfigMapName)
	}
	if err != nil {
		return nil, fmt.Errorf("read the CA: %v", err)
	}
	if !holdsCertificate(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate; keeping the CA the node has", p)
	}
	return b, nil
}

func holdsCertificate(b []byte) bool {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return false
		}
		if block.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(block.Bytes); err == nil {
				return true
			}
		}
	}
}

// installPlugin copies the executable to PLUGIN_DIR/PluginName when the
// content differs.
func (a *Agent) installPlugin() (string, bool, error) {
	o := a.opts
	dst := filepath.Join(o.PluginDir, nodecreds.PluginName)
	if fi, err := os.Stat(o.PluginDir); err != nil || !fi.IsDir() {
		return dst, false, fmt.Errorf("plugin dir %s is not a directory: mount the kubelet's --image-credential-provider-bin-dir there", o.PluginDir)
	}
	if a.srcSum == nil {
		sum, err := fileSum(o.Executable)
		if err != nil {
			return dst, false, fmt.Errorf("read regcred's executable: %v", err)
		}
		a.srcSum = sum
	}
	fi, err := os.Stat(dst)
	if err == nil && a.dst != nil && os.SameFile(fi, a.dst) && fi.Size() == a.dst.Size() && fi.ModTime().Equal(a.dst.ModTime()) && fi.Mode() == a.dst.Mode() {
		return dst, false, nil
	}
	if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm() == 0o755 {
		if sum, err := fileSum(dst); err == nil && bytes.Equal(sum, a.srcSum) {
			a.dst = fi
			return dst, false, nil
		}
	}
	src, err := os.Open(o.Executable)
	if err != nil {
		return dst, false, fmt.Errorf("read regcred's executable: %v", err)
	}
	defer func() { _ = src.Close() }()
	if err := atomicWrite(dst, src, 0o755); err != nil {
		return dst, false, err
	}
	if fi, err := os.Stat(dst); err == nil {
		a.dst = fi
	}
	return dst, true, nil
}

func fileSum(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// writeIfChanged replaces p with content unless it already holds it.
func writeIfChanged(p string, content []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, content) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() == mode {
			return false, nil
		}
	}
	if err := atomicWrite(p, bytes.NewReader(content), mode); err != nil {
		return false, err
	}
	return true, nil
}

// atomicWrite writes r to a temporary file next to p and renames it over
// p: the rename is atomic within one directory (one filesystem).
func atomicWrite(p string, r io.Reader, mode os.FileMode) (err error) {
	dir, base := filepath.Split(p)
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %v", p, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, r); err != nil {
		return fmt.Errorf("write %s: %v", p, err)
	}
	// CreateTemp makes 0600 and the umask must not decide: the kubelet
	// runs the plugin as root, but operators read these files.
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %v", p, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %v", p, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %v", p, err)
	}
	if err = os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("write %s: %v", p, err)
	}
	return nil
}

func checkServer(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.TrimRight(u.Path, "/") != "" {
		return fmt.Errorf("broker address %q is not an https://HOST[:PORT] URL", s)
	}
	return nil
}

// joinOneLine joins errors on one line: the agent's log is read line by
// line.
func joinOneLine(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = strings.Join(strings.Fields(e.Error()), " ")
	}
	return errors.New(strings.Join(msgs, "; "))
}
