package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/imagebuild"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/fixtures"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// TestRotation: the registry takes only a new password and the source
// Secret is updated. The managed Secrets are updated in place (same UID),
// so new Pods pull with the new password, and a Pod restarted in an old
// namespace, whose image is already on the node, is accepted by the
// kubelet's re-verification of cached images.
func TestRotation(t *testing.T) {
	e := withRegcred(t)
	reg := e.ownRegistry(t, testregistry.Basic)
	src := e.sourceSecret(t, regcredNS, "rotate-robot", reg)
	e.clusterCredential(t, "rotate", "rotate-robot", labels("e2e", "rotate"), []string{reg.Host}, nil)
	old := e.namespace(t, "rotate-old", labels("e2e", "rotate"))
	if err := e.c.Create(bg, pod(old, "before", reg.Ref("app:1"))); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, old, "before")
	var managed corev1.Secret
	if err := e.c.Get(bg, client.ObjectKey{Namespace: old, Name: "regcred-rotate"}, &managed); err != nil {
		t.Fatal(err)
	}
	uid := managed.UID

	const newPassword = "rotated-password-2"
	if err := reg.SetPassword(reg.User.Name, newPassword); err != nil {
		t.Fatal(err)
	}
	want := testenv.DockerConfigJSON(t, reg.Host, reg.User.Name, newPassword)
	src.Data[corev1.DockerConfigJsonKey] = want
	if err := e.c.Update(bg, src); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		var s corev1.Secret
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: old, Name: "regcred-rotate"}, &s); err != nil {
			return err
		}
		if !bytes.Equal(s.Data[corev1.DockerConfigJsonKey], want) {
			return fmt.Errorf("managed Secret not rotated yet")
		}
		if s.UID != uid {
			return fmt.Errorf("managed Secret replaced (UID %s, was %s): the kubelet would refuse cached images", s.UID, uid)
		}
		return nil
	})

	fresh := e.namespace(t, "rotate-new", labels("e2e", "rotate"))
	if err := e.c.Create(bg, pod(fresh, "after", reg.Ref("app:1"))); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, fresh, "after")
	pulled := pod(old, "restarted", reg.Ref("app:1"))
	pulled.Spec.Containers[0].ImagePullPolicy = corev1.PullIfNotPresent
	if err := e.c.Create(bg, pulled); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, old, "restarted")
	again := pod(old, "pulls-again", reg.Ref("app:1"))
	if err := e.c.Create(bg, again); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, old, "pulls-again")
}

// TestDeletingTheCredential: its Secrets and ServiceAccount entries go, and
// a new Pod is refused by the registry again.
func TestDeletingTheCredential(t *testing.T) {
	e := withRegcred(t)
	reg := e.registry(t, testregistry.Basic)
	e.sourceSecret(t, regcredNS, "gone-robot", reg)
	cred := e.clusterCredential(t, "gone", "gone-robot", labels("e2e", "gone"), []string{reg.Host}, nil)
	ns := e.namespace(t, "gone", labels("e2e", "gone"))
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		var sa corev1.ServiceAccount
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &sa); err != nil {
			return err
		}
		if !slices.Contains(secretNames(sa.ImagePullSecrets), "regcred-gone") {
			return fmt.Errorf("default ServiceAccount not patched yet: %v", sa.ImagePullSecrets)
		}
		return nil
	})
	if err := e.c.Create(bg, pod(ns, "before", reg.Ref("app:1"))); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, ns, "before")

	e.deleteAndWait(t, cred)
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		var sa corev1.ServiceAccount
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &sa); err != nil {
			return err
		}
		if slices.Contains(secretNames(sa.ImagePullSecrets), "regcred-gone") {
			return fmt.Errorf("ServiceAccount still lists the Secret")
		}
		err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "regcred-gone"}, &corev1.Secret{})
		if client.IgnoreNotFound(err) != nil || err == nil {
			return fmt.Errorf("managed Secret still there (err %v)", err)
		}
		return nil
	})
	if err := e.c.Create(bg, pod(ns, "after", reg.Ref("app:1"))); err != nil {
		t.Fatal(err)
	}
	if events := e.waitPullFailure(t, ns, "after"); !strings.Contains(events, refusedAnonymous) {
		t.Errorf("events do not show the registry's refusal of a pull without credentials:\n%s", events)
	}
}

// TestImageVolume: an image volume from the authenticated registry is
// pulled by the kubelet with the Secret the webhook injected for it, and
// mounted by containerd 2: the container prints a file of the volume's
// image.
func TestImageVolume(t *testing.T) {
	e := withRegcred(t)
	reg := e.registry(t, testregistry.Basic)
	if _, err := reg.PushTestImage(bg, "app:1"); err != nil {
		t.Fatal(err)
	}
	want := "weights " + strconv.FormatInt(time.Now().UnixNano(), 36)
	model, err := fixtures.DataImage(imagebuild.File{Path: "model.txt", Mode: 0o644, Data: []byte(want)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PushImage(bg, "model:1", model); err != nil {
		t.Fatal(err)
	}
	e.sourceSecret(t, regcredNS, "volume-robot", reg)
	e.clusterCredential(t, "volume", "volume-robot", labels("e2e", "volume"), []string{reg.Host}, func(c *v1alpha1.ClusterRegistryCredential) {
		c.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
	})
	ns := e.namespace(t, "volume", labels("e2e", "volume"))
	p := pod(ns, "app", reg.Ref("app:1"))
	p.Spec.Volumes = []corev1.Volume{{Name: "model", VolumeSource: corev1.VolumeSource{
		Image: &corev1.ImageVolumeSource{Reference: reg.Ref("model:1"), PullPolicy: corev1.PullAlways}}}}
	p.Spec.Containers[0].Args = []string{"cat", "/model/model.txt"}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "model", MountPath: "/model"}}
	if err := e.c.Create(bg, p); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, ns, "app")
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		events, err := e.events(ctx, ns, "app", "")
		if err != nil {
			return err
		}
		if !strings.Contains(events, fmt.Sprintf("Pulled: Successfully pulled image %q", reg.Ref("model:1"))) {
			return fmt.Errorf("no Event of the kubelet's pull of the volume's image yet:\n%s", events)
		}
		if logs := e.podLog(t, ns, "app"); !strings.Contains(logs, "/model/model.txt: "+want) {
			return fmt.Errorf("the container did not print the volume's file: %q", logs)
		}
		return nil
	})
}

// TestHelmPostRenderer: a chart whose Deployment, Job and CronJob cannot
// set imagePullSecrets, installed with `regcred manifests inject` as Helm's
// post-renderer. regcred neither patches ServiceAccounts nor injects here:
// only what the post-renderer wrote lets the Pods pull, and they run.
func TestHelmPostRenderer(t *testing.T) {
	e := withRegcred(t)
	reg := e.registry(t, testregistry.Basic)
	if _, err := reg.PushTestImage(bg, "dockerhub/library/busybox:1.36"); err != nil {
		t.Fatal(err)
	}
	e.sourceSecret(t, regcredNS, "helm-robot", reg)
	e.clusterCredential(t, "helm", "helm-robot", labels("e2e", "helm"), []string{reg.Host}, func(c *v1alpha1.ClusterRegistryCredential) {
		c.Spec.ServiceAccounts.Mode = v1alpha1.ServiceAccountsNone
		c.Spec.PodInjection.Enabled = ptr.To(false)
	})
	ns := e.namespace(t, "helm", labels("e2e", "helm"))
	testenv.Eventually(t, pullWait, func(ctx context.Context) error {
		return e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "regcred-helm"}, &corev1.Secret{})
	})

	dir := t.TempDir()
	bin := filepath.Join(dir, "regcred")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(testenv.RepoRoot(), "cmd", "regcred")).CombinedOutput(); err != nil {
		t.Fatalf("build regcred: %v\n%s", err, out)
	}
	helm := testenv.Tool(t, "helm3")
	cmd := exec.Command(helm, "install", "shop", "testdata/shop", "--namespace", ns, "--kubeconfig", e.Kubeconfig,
		"--set", "image="+reg.Ref("app:1"), "--set", "worker=busybox:1.36",
		"--post-renderer", bin, "--post-renderer-args", "manifests", "--post-renderer-args", "inject",
		"--post-renderer-args", "--secret=regcred-helm="+reg.Host,
		"--post-renderer-args", "--mirror=docker.io="+reg.Host+"/dockerhub")
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+filepath.Join(dir, "config"), "HELM_CACHE_HOME="+filepath.Join(dir, "cache"), "HELM_DATA_HOME="+filepath.Join(dir, "data"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	var cron batchv1.CronJob
	if err := e.c.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-report"}, &cron); err != nil {
		t.Fatal(err)
	}
	e.jobFromCronJob(t, &cron, "shop-report-now")
	for _, app := range []string{"web", "migrate", "report"} {
		e.waitPodOf(t, ns, app)
	}
}
