// Command demo shows regcred's main job on a real cluster on this machine:
// a kubelet node on containerd, the Kubernetes controllers, an
// authenticated registry holding an image, and regcred. It tells the story
// in a few lines — a Deployment stuck in ImagePullBackOff, the one object
// that fixes it, the Pod Running — then prints the KUBECONFIG and commands
// to try, and keeps everything running until Ctrl-C, when it stops it all
// and restores the host. `make demo` runs it (as root: a node needs it).
//
// It never touches the cluster of your current kubectl context.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"regcred.dev/regcred/internal/testenv/testcluster"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	stateDir := flag.String("state-dir", "", "directory for the kubeconfig and logs (default: a new temporary directory)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// `make demo | tee demo.log` and Ctrl-C: tee dies with the demo's
	// output, and Go kills a program on its first write to a broken
	// stdout or stderr unless SIGPIPE is notified. Notified (not
	// ignored, which the cluster's programs would inherit), the write
	// only fails and the host is still restored.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	if *stateDir == "" {
		dir, err := os.MkdirTemp("", "regcred-demo-")
		if err != nil {
			return err
		}
		*stateDir = dir
	}
	if err := os.MkdirAll(*stateDir, 0o755); err != nil {
		return err
	}
	if err := testcluster.Check(); err != nil {
		return err
	}
	logFile := filepath.Join(*stateDir, "manager.log")
	logs, err := os.Create(logFile)
	if err != nil {
		return err
	}
	defer logs.Close()
	ctrl.SetLogger(zap.New(zap.WriteTo(logs)))

	say("starting a cluster: etcd, kube-apiserver, controller-manager, scheduler, a kubelet node on containerd ...")
	cl, err := testcluster.Start()
	if err != nil {
		return err
	}
	defer func() {
		say("stopping the cluster and restoring the host ...")
		if err := cl.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "demo: stop: %v\n", err)
		}
	}()
	kubeconfig := filepath.Join(*stateDir, "kubeconfig")
	if err := copyFile(cl.Kubeconfig, kubeconfig); err != nil {
		return err
	}
	say("node %s Ready after %s", cl.NodeName, cl.NodeReady.Round(100*time.Millisecond))

	say("starting a private registry (htpasswd auth, TLS) with an image ...")
	reg, err := testregistry.Start(testregistry.Basic)
	if err != nil {
		return err
	}
	defer reg.Close()
	if err := cl.TrustRegistry(reg); err != nil {
		return err
	}
	if _, err := reg.PushTestImage(ctx, "shop/web:1.0"); err != nil {
		return err
	}
	if _, err := reg.PushTestImage(ctx, "dockerhub/library/redis:7"); err != nil {
		return err
	}

	say("starting regcred (controllers and admission webhook) ...")
	if err := startManager(ctx, cl, filepath.Join(*stateDir, "webhook-certs")); err != nil {
		return err
	}
	story, err := tellStory(ctx, cl, reg)
	if err != nil {
		return err
	}

	fmt.Printf(`
%s
The cluster is yours to try (Ctrl-C stops everything and restores the host):
  export KUBECONFIG=%s
  kubectl get clusterregistrycredentials
  kubectl get pods -n shop
  kubectl get secret regcred-private-registry -n shop
  kubectl get serviceaccount default -n shop -o jsonpath='{.imagePullSecrets}{"\n"}'

  A brand-new namespace runs private images at once:
    kubectl create namespace cafe && kubectl create deployment web -n cafe --image=%s
    kubectl wait pod -n cafe -l app=web --for=condition=Ready --timeout=60s

  Docker Hub images come from the mirror, with its credential:
    kubectl run cache -n cafe --image=redis:7
    kubectl get pod cache -n cafe -o jsonpath='{.spec.containers[0].image} {.spec.imagePullSecrets}{"\n"}'

Logs: regcred %s, the cluster's programs %s
`, story, kubeconfig, reg.Ref("shop/web:1.0"), logFile, cl.Dir)
	fmt.Println("ready")

	<-ctx.Done()
	return nil
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
