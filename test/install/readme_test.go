package install

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/fixtures"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// readmeVersion is the one version the README's commands are run with.
const readmeVersion = "v9.8.7"

// TestREADMEInstall runs the shell commands of the README's Install section
// as written, with one version filled in for VERSION and the harness's
// registry for harbor.example.com, against the real cluster: the release's
// image copied with skopeo, the namespace, the image pull Secret made
// with the CLI, the chart package installed with Helm, and the uninstall.
// The chart package's name, its default image tag and the pushed tag must
// agree, or the manager's Pods never pull.
func TestREADMEInstall(t *testing.T) {
	testenv.SkipShort(t, "installs regcred on a real cluster")
	commands := readmeInstallCommands(t)
	cl := suite.Cluster(t)
	reg := suite.Registry(t, testregistry.Basic)
	if err := cl.TrustRegistry(reg); err != nil {
		t.Fatal(err)
	}
	c := cl.Client
	uninstallOnFailure(t, testenv.Tool(t, "helm3"), cl.Kubeconfig)
	// A cluster without regcred, as the README's reader has: another test
	// of this package may have left regcred's namespace.
	if err := c.Delete(bg, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		err := c.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("namespace %s still there (%v)", ns, err)
	})

	// What `make release` gives, for this machine's platform.
	work := t.TempDir()
	helm := testenv.Tool(t, "helm3")
	fixtures.RunReleaseTool(t, "all", "--out", filepath.Join(work, "dist"), "--helm", helm, "--platforms", "linux/"+goruntime.GOARCH,
		"--version", readmeVersion, "--commit", strings.Repeat("9", 40), "--date", "1700000000")

	// The programs the README calls, by the names it calls them.
	bin := filepath.Join(work, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xzf", filepath.Join(work, "dist", fmt.Sprintf("regcred_%s_linux_%s.tar.gz", readmeVersion, goruntime.GOARCH)), "-C", bin, "regcred").CombinedOutput(); err != nil {
		t.Fatalf("unpack the CLI archive: %v: %s", err, out)
	}
	for name, tool := range map[string]string{"helm": helm, "kubectl": testenv.Tool(t, "kubectl")} {
		if err := os.Symlink(tool, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(work, "robot.token"), []byte(reg.User.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	// skopeo's credentials and trust, as a user's docker login and CA
	// would give them.
	authFile := filepath.Join(work, "auth.json")
	if err := os.WriteFile(authFile, reg.DockerConfigJSON(t), 0o600); err != nil {
		t.Fatal(err)
	}

	replacer := strings.NewReplacer("VERSION", readmeVersion, "harbor.example.com", reg.Host, "'robot$regcred'", shellQuote(reg.User.Name))
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+cl.Kubeconfig,
		"REGISTRY_AUTH_FILE="+authFile, "SSL_CERT_FILE="+reg.CAFile,
		"HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	run := func(script string) {
		t.Helper()
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir, cmd.Env = work, env
		out, err := cmd.CombinedOutput()
		t.Logf("$ %s\n%s", script, out)
		if err != nil {
			t.Fatalf("the README's command failed: %v", err)
		}
	}
	start := time.Now()
	for _, block := range commands.install {
		run(replacer.Replace(block))
	}

	// What the commands should have made: both replicas of the release's
	// own image Running and Ready, pulled with the Secret the CLI made.
	e := &installEnv{Cluster: cl, t: t, c: c, reg: reg}
	pods := e.readyPods(t, readmeVersion, 2)
	t.Logf("measured: the README's install, from skopeo to %d replicas Ready, in %.1fs", len(pods), time.Since(start).Seconds())
	var pod corev1.Pod
	if err := c.Get(bg, client.ObjectKey{Namespace: ns, Name: pods[0]}, &pod); err != nil {
		t.Fatal(err)
	}
	if want := reg.Ref("platform/regcred:" + readmeVersion); pod.Spec.Containers[0].Image != want {
		t.Errorf("the manager runs %s, want %s", pod.Spec.Containers[0].Image, want)
	}
	e.waitCABundle(t)

	run(replacer.Replace(commands.uninstall))
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		err := c.Get(ctx, client.ObjectKey{Name: relName}, &admissionregistrationv1.MutatingWebhookConfiguration{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("the webhook configuration after the README's uninstall: %v", err)
	})
}

type readmeCommands struct {
	install   []string
	uninstall string
}

// readmeInstallCommands are the sh blocks of the README's Install section
// and its uninstall command.
func readmeInstallCommands(t *testing.T) readmeCommands {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "\n## Install\n")
	if start < 0 {
		t.Fatal("README.md has no Install section")
	}
	section := readme[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var out readmeCommands
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1)
	for _, m := range blocks {
		var lines []string
		for _, line := range strings.Split(m[1], "\n") {
			lines = append(lines, strings.TrimPrefix(line, "   "))
		}
		out.install = append(out.install, strings.Join(lines, "\n"))
	}
	if len(out.install) != 2 {
		t.Fatalf("the README's Install section has %d sh blocks, want 2 (the image, the chart): update this test with it", len(out.install))
	}
	u := regexp.MustCompile("`(helm uninstall [^`]+)`").FindStringSubmatch(section)
	if u == nil {
		t.Fatal("the README's Install section names no helm uninstall command")
	}
	out.uninstall = u[1]
	return out
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
