package install

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/nodecreds"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/testcluster"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// The cluster's kubelet starts configured for regcred's credential
// provider (`regcred kubelet-config`'s output) for one registry, with
// bin and config directories of the test's own that the chart's node
// agent fills: nothing is installed there before the chart.
var node struct {
	reg               *testregistry.Registry
	binDir, configDir string
}

func setupNode() ([]testcluster.Option, error) {
	reg, err := testregistry.Start(testregistry.Token)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("/var/tmp", "regcred-install-node-")
	if err != nil {
		reg.Close()
		return nil, err
	}
	suite.OnStop(func() {
		reg.Close()
		_ = os.RemoveAll(dir)
	})
	node.reg = reg
	// A kubelet refuses to start when a configured plugin is missing, so a
	// node's bootstrap puts a placeholder there (docs/node-credentials.md);
	// the node agent replaces it with regcred's binary.
	p, opt, err := testcluster.NewProvider(dir, []byte(placeholder), reg.Host)
	if err != nil {
		return nil, err
	}
	node.binDir, node.configDir = p.BinDir, p.ConfigDir
	return []testcluster.Option{opt}, nil
}

const placeholder = "#!/bin/sh\necho 'regcred-credential-provider: the node agent has not installed the plugin yet' >&2\nexit 1\n"

// nodeCredentials upgrades the release with nodeCredentials.enabled: the
// node agent installs the plugin and writes the broker's address and CA,
// and a Deployment in a brand-new namespace pulls from a registry that
// only a delivery Node credential logs in to, with no Secret in the
// namespace.
func (e *installEnv) nodeCredentials(t *testing.T) {
	t.Helper()
	if err := e.TrustRegistry(node.reg); err != nil {
		t.Fatal(err)
	}
	if _, err := node.reg.PushTestImage(bg, "apps/node:1"); err != nil {
		t.Fatal(err)
	}
	e.helmRun("upgrade", relName, chartDir(), "--namespace", ns, "--wait", "--timeout", "5m",
		"--set", "image.tag=v0.2.0", "--set", "webhook.failurePolicy=Fail",
		"--set", "nodeCredentials.enabled=true", "--set", "nodeCredentials.pluginDir="+node.binDir,
		"--set", "nodeCredentials.configDir="+node.configDir)
	testenv.Eventually(t, waitLong, func(context.Context) error {
		for _, f := range []string{filepath.Join(node.configDir, nodecreds.ServerFile), filepath.Join(node.configDir, nodecreds.CAFile)} {
			if _, err := os.Stat(f); err != nil {
				return fmt.Errorf("the node agent has not written %s: %v", f, err)
			}
		}
		bin, err := os.ReadFile(filepath.Join(node.binDir, nodecreds.PluginName))
		if err != nil || !bytes.HasPrefix(bin, []byte("\x7fELF")) {
			return fmt.Errorf("the node agent has not installed the plugin binary (%v)", err)
		}
		return nil
	})

	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "node-registry-source"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: node.reg.DockerConfigJSON(t)}}
	if err := e.c.Create(bg, src); err != nil {
		t.Fatal(err)
	}
	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "node-registry"}}
	cred.Spec.Registries = []string{node.reg.Host}
	cred.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: src.Name}
	cred.Spec.Delivery = v1alpha1.DeliveryNode
	if err := e.c.Create(bg, cred); err != nil {
		t.Fatal(err)
	}
	app := e.namespace(t, "node")
	e.deploymentOf(t, app, "web", node.reg.Ref("apps/node:1"))
	pod := e.waitDeploymentPodRunning(t, app, "web")
	if len(pod.Spec.ImagePullSecrets) > 0 {
		t.Errorf("pod %s/%s has imagePullSecrets %v: delivery Node adds none", app, pod.Name, pod.Spec.ImagePullSecrets)
	}
	var secrets corev1.SecretList
	if err := e.c.List(bg, &secrets, client.InNamespace(app)); err != nil {
		t.Fatal(err)
	}
	// The chart's other credential (delivery Secrets, every namespace)
	// has its copy here; nothing may hold the node registry's login.
	for _, s := range secrets.Items {
		if s.Annotations[credential.AnnotationCredential] == "ClusterRegistryCredential/node-registry" ||
			bytes.Contains(s.Data[corev1.DockerConfigJsonKey], []byte(node.reg.Host)) {
			t.Errorf("Secret %s/%s holds the node registry's login: delivery Node writes none", app, s.Name)
		}
	}
	testenv.Eventually(t, waitLong, func(ctx context.Context) error {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(cred), cred); err != nil {
			return err
		}
		if d := cred.Status.Delivery; d == nil || d.Served == 0 {
			return fmt.Errorf("status.delivery %+v: no request served yet", d)
		}
		return nil
	})
}
