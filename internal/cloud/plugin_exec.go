package cloud

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// pluginPath is the whole search path a plugin gets: the system's
// directories, not the manager's PATH and never the spec's.
const pluginPath = "PATH=/usr/bin:/bin"

// outputGrace is how long the plugin's pipes are read after it and its
// process group were killed (a child that left the group may hold them).
const outputGrace = 2 * time.Second

// refusedEnvPrefixes and refusedEnvNames are variables that change what
// code a plugin loads or where it looks up programs, libraries and
// configuration: the dynamic loader's (LD_*, DYLD_*, and glibc's list of
// variables it drops for setuid programs), the shells' start-up files and
// exported functions, and PATH. A ClusterRegistryCredential chooses a
// plugin among those an administrator put in --credential-provider-dir;
// these would let it run other code as the manager.
var (
	refusedEnvPrefixes = []string{"LD_", "DYLD_", "BASH_FUNC_"}
	refusedEnvNames    = []string{"PATH", "GCONV_PATH", "GETCONF_DIR", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH", "MALLOC_TRACE",
		"NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TZDIR", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "IFS", "PS4",
		// Interpreters' and libraries' code and start-up hooks.
		"OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE",
		"NODE_OPTIONS", "NODE_PATH", "PERL5OPT", "PERL5LIB", "PERLLIB", "RUBYOPT", "RUBYLIB",
		"JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH", "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES"}
)

// pluginEnv is the environment a plugin runs with: PATH and the spec's
// variables, after refusing the ones above.
func pluginEnv(spec []string) ([]string, error) {
	env := []string{pluginPath}
	for _, kv := range spec {
		name, _, _ := strings.Cut(kv, "=")
		if err := checkEnvName(name); err != nil {
			return nil, err
		}
		env = append(env, kv)
	}
	return env, nil
}

func checkEnvName(name string) error {
	if name == "" || strings.ContainsAny(name, "\x00") {
		return errorf(Invalid, "credential provider plugin: an env entry has no name")
	}
	refused := slices.Contains(refusedEnvNames, name)
	for _, p := range refusedEnvPrefixes {
		refused = refused || strings.HasPrefix(name, p)
	}
	if refused {
		return errorf(Invalid, "credential provider plugin: env %s is not allowed (it changes what code the plugin runs); plugins get PATH=/usr/bin:/bin", name)
	}
	return nil
}

// resolve follows every symlink of Command and of Dir and returns the
// file to run, refusing one outside Dir: the spec's path is only checked
// lexically when the credential is read, and a link inside the directory
// may point anywhere.
func (p *Plugin) resolve() (string, error) {
	if p.Dir == "" {
		return "", errorf(Invalid, "credential provider plugins are off: start the manager with --credential-provider-dir DIR and put the plugin there")
	}
	dir, err := realPath(p.Dir)
	if err != nil {
		return "", errorf(Invalid, "credential provider directory: %v", err)
	}
	path, err := realPath(p.Command)
	if errors.Is(err, fs.ErrNotExist) {
		return "", errorf(Invalid, "credential provider plugin %s: not found in the manager's file system", p.Command)
	}
	if err != nil {
		return "", errorf(Invalid, "credential provider plugin: %v", err)
	}
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", errorf(Invalid, "credential provider plugin %s resolves to %s, outside %s, the only directory plugins run from", p.Command, path, p.Dir)
	}
	return path, nil
}

func realPath(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", &fs.PathError{Op: "resolve", Path: path, Err: errors.New("not an absolute path")}
	}
	return filepath.EvalSymlinks(path)
}

// pluginOutput is what a plugin printed, bounded.
type pluginOutput struct {
	stdout    []byte
	stderrLen int
	// overflow names the stream that passed maxPluginOutput.
	overflow string
}

// runPlugin runs path in a process group of its own with exactly env, and
// kills the whole group when the plugin exits, times out or prints too
// much: nothing it started outlives it.
func runPlugin(ctx context.Context, path string, args, env []string, stdin []byte) (pluginOutput, error) {
	var out pluginOutput
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	ownGroup(cmd)
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = outputGrace
	// The pipes are the manager's own (not os/exec's copying goroutines),
	// so Wait returns when the plugin exits even if a child it left behind
	// still holds them.
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		return out, err
	}
	stderr, stderrW, err := os.Pipe()
	if err != nil {
		_ = stdout.Close()
		_ = stdoutW.Close()
		return out, err
	}
	cmd.Stdout, cmd.Stderr = stdoutW, stderrW
	err = cmd.Start()
	_ = stdoutW.Close()
	_ = stderrW.Close()
	if err != nil {
		_ = stdout.Close()
		_ = stderr.Close()
		return out, err
	}
	pid := cmd.Process.Pid
	kill := func() { _ = killGroup(pid) }
	outC := capture(stdout, kill)
	errC := capture(stderr, kill)
	err = cmd.Wait()
	// The leader is gone; kill what it left in its group. Linux hands out
	// PIDs in turn, so the group's number is not someone else's yet.
	kill()
	reapGroup(pid)
	for _, f := range []*os.File{stdout, stderr} {
		_ = f.SetReadDeadline(time.Now().Add(outputGrace))
	}
	o, e := <-outC, <-errC
	out.stdout, out.stderrLen = o.data, e.n
	switch {
	case o.over:
		out.overflow = "stdout"
	case e.over:
		out.overflow = "stderr"
	}
	return out, err
}

type captured struct {
	data []byte
	n    int
	over bool
}

// capture reads r up to maxPluginOutput bytes; past that it kills the
// plugin and discards the rest until the pipe closes.
func capture(r *os.File, kill func()) <-chan captured {
	c := make(chan captured, 1)
	go func() {
		defer func() { _ = r.Close() }()
		var buf bytes.Buffer
		n, _ := io.Copy(&buf, io.LimitReader(r, maxPluginOutput+1))
		res := captured{data: buf.Bytes(), n: int(n)}
		if n > maxPluginOutput {
			res.over = true
			res.data = nil
			kill()
			_, _ = io.Copy(io.Discard, r)
		}
		c <- res
	}()
	return c
}
