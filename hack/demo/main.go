// Command demo runs regcred's main job on a laptop: it starts a local
// kube-apiserver + etcd and a local authenticated registry, prints how to
// reach both, and keeps them running until interrupted. `make demo` runs it.
//
// It never touches the cluster of your current kubectl context.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"regcred.dev/regcred/internal/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	stateDir := flag.String("state-dir", "", "directory for the kubeconfig and registry auth file (default: a new temporary directory)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

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

	fmt.Fprintln(os.Stderr, "starting kube-apiserver and etcd ...")
	cp, err := testenv.StartControlPlane()
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	kubeconfig := filepath.Join(*stateDir, "kubeconfig")
	if err := copyFile(cp.Kubeconfig, kubeconfig); err != nil {
		return err
	}

	fmt.Fprintln(os.Stderr, "starting a registry with bearer-token auth ...")
	reg, err := testenv.StartRegistry(testenv.Token)
	if err != nil {
		return err
	}
	defer reg.Close()
	pushCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := reg.PushRandomImage(pushCtx, "demo/hello:v1"); err != nil {
		return err
	}
	authFile := filepath.Join(*stateDir, "registry-auth.json")
	if err := writeAuthFile(authFile, reg); err != nil {
		return err
	}
	certDir := filepath.Join(*stateDir, "certs.d")
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		return err
	}
	if err := copyFile(reg.CAFile, filepath.Join(certDir, "ca.crt")); err != nil {
		return err
	}

	fmt.Fprintln(os.Stderr, "starting the regcred manager ...")
	logFile := filepath.Join(*stateDir, "manager.log")
	if err := startManager(ctx, cp, logFile, filepath.Join(*stateDir, "webhook-certs")); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "applying a ClusterRegistryCredential and a ClusterImageMirror ...")
	if err := applySample(ctx, cp, reg); err != nil {
		return err
	}
	pod, err := firstPod(ctx, cp)
	if err != nil {
		return err
	}
	var pullSecrets []string
	for _, r := range pod.Spec.ImagePullSecrets {
		pullSecrets = append(pullSecrets, r.Name)
	}

	fmt.Printf(`
regcred demo is running. Press Ctrl-C to stop it and remove everything.

Control plane (kube-apiserver %s + etcd), with the regcred manager running
(log: %s):
  export KUBECONFIG=%s
  kubectl get clusterregistrycredentials
  kubectl get secret regcred-demo-registry -n team-a
  kubectl get serviceaccount default -n team-b -o jsonpath='{.imagePullSecrets}{"\n"}'

  A namespace created now gets the pull Secret and patched ServiceAccounts:
    kubectl create namespace team-c && kubectl create serviceaccount builder -n team-c
    kubectl get serviceaccount builder -n team-c -o jsonpath='{.imagePullSecrets}{"\n"}'

The first Pod of the brand-new namespace "shop", created as image nginx:1.27,
came back from the API server with:
  image:            %s
  imagePullSecrets: %v
  annotations:      %v
  kubectl get pod web -n shop -o jsonpath='{.spec.containers[0].image} {.spec.imagePullSecrets}{"\n"}'
  kubectl create namespace cafe && kubectl run web -n cafe --image=redis:7
  kubectl get pod web -n cafe -o jsonpath='{.spec.containers[0].image} {.spec.imagePullSecrets}{"\n"}'

Private registry (distribution, bearer-token auth, TLS with a throwaway CA):
  host:     %s
  user:     %s (its password is in the auth file below)
  image:    %s
  skopeo inspect --authfile %s --cert-dir %s docker://%s

`, testenv.KubeVersion, logFile, kubeconfig, pod.Spec.Containers[0].Image, pullSecrets, pod.Annotations,
		reg.Host, reg.User.Name, reg.Ref("demo/hello:v1"),
		authFile, certDir, reg.Ref("demo/hello:v1"))
	fmt.Println("ready")

	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "stopping ...")
	return nil
}

func writeAuthFile(path string, reg *testenv.Registry) error {
	auth := base64.StdEncoding.EncodeToString([]byte(reg.User.Name + ":" + reg.User.Password))
	b, err := json.MarshalIndent(map[string]any{"auths": map[string]any{reg.Host: map[string]string{"auth": auth}}}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
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
