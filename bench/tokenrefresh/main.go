// Command tokenrefresh measures cloud token refreshes on the local control
// plane: N namespaces × 3 ClusterRegistryCredentials sharing one ECR
// identity, served by a fake ECR issuing tokens with a short life. It
// reports the token requests per refresh (one per identity is the goal)
// and the time from each new token to every copy holding it.
//
//	go run ./bench/tokenrefresh -namespaces 1000 -life 60s -refreshes 3
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/bench/internal/benchenv"
	"regcred.dev/regcred/internal/cloud"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/manager"
	"regcred.dev/regcred/internal/testenv/fakecloud"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

var (
	namespaces  = flag.Int("namespaces", 1000, "namespaces to fan out to")
	credentials = flag.Int("credentials", 3, "ClusterRegistryCredentials sharing one identity")
	life        = flag.Duration("life", 60*time.Second, "life of the fake ECR's tokens (refreshed at about half)")
	refreshes   = flag.Int("refreshes", 3, "refreshes to measure")
)

const regcredNS = "regcred-system"

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "tokenrefresh: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	// Ctrl-C stops the control plane too.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	log.SetLogger(logr.Discard()) // the manager logs nowhere
	cp, err := benchenv.ControlPlane()
	if err != nil {
		return err
	}
	defer cp.Stop()
	c := cp.Client
	reg, err := testregistry.Start(testregistry.Token)
	if err != nil {
		return err
	}
	defer reg.Close()
	aws, err := fakecloud.StartAWS(reg, "eu-west-1")
	if err != nil {
		return err
	}
	defer aws.Close()
	aws.SetLife(*life)
	trust := &fakecloud.Trust{}
	trust.Add(aws.CA.CertPEM)

	fmt.Printf("# token refresh benchmark: %d namespaces x %d ClusterRegistryCredentials, one ECR identity, tokens living %s\n\n", *namespaces, *credentials, *life)
	if _, err := benchenv.Namespaces(ctx, c, regcredNS, *namespaces, false); err != nil {
		return err
	}
	id, secret := aws.NewAccessKey()
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNS, Name: "aws-keys"},
		Data: map[string][]byte{cloud.AWSAccessKeyID: []byte(id), cloud.AWSSecretAccessKey: []byte(secret)}}); err != nil {
		return err
	}

	mgr, err := manager.New(ctx, manager.Options{RestConfig: cp.Config, Namespace: regcredNS, MetricsAddr: "0", ProbeAddr: "0",
		QPS: 200, Burst: 400, Cloud: cloud.Env{HTTPClient: trust.Client()}})
	if err != nil {
		return err
	}
	go func() { _ = mgr.Start(ctx) }()

	t0 := time.Now()
	for i := range *credentials {
		cr := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ecr-%d", i)}}
		cr.Spec.Registries = []string{reg.Host}
		cr.Spec.SecretName = cr.Name
		cr.Spec.Source.ECR = &v1alpha1.ECRSource{Region: "eu-west-1", Endpoint: aws.URL,
			Identity: v1alpha1.CloudIdentity{SecretRef: &v1alpha1.SecretReference{Name: "aws-keys"}}}
		cr.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"bench": "yes"}}
		if err := c.Create(ctx, cr); err != nil {
			return err
		}
	}
	want := *namespaces * *credentials
	first, err := waitAllHold(ctx, c, want, "")
	if err != nil {
		return err
	}
	fmt.Printf("converge: %d copies in %s; token requests: %d\n\n", want, time.Since(t0).Round(time.Millisecond), aws.TokensForKey(id))
	fmt.Printf("| refresh | token requests | new token -> all %d copies hold it |\n|---|---|---|\n", want)
	prev, prevRequests := first, aws.TokensForKey(id)
	for r := 1; r <= *refreshes; r++ {
		// The fake counts the request as it answers: the wait starts there.
		for aws.TokensForKey(id) == prevRequests {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(5 * time.Millisecond)
		}
		issued := time.Now()
		cur, err := waitAllHold(ctx, c, want, prev)
		if err != nil {
			return err
		}
		took := time.Since(issued)
		requests := aws.TokensForKey(id) - prevRequests
		fmt.Printf("| %d | %d | %s |\n", r, requests, took.Round(time.Millisecond))
		prev, prevRequests = cur, prevRequests+requests
	}
	return nil
}

// waitAllHold waits until every managed copy holds one password other
// than old, and returns it.
func waitAllHold(ctx context.Context, c client.Client, want int, old string) (string, error) {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var list corev1.SecretList
		if err := c.List(ctx, &list, client.MatchingLabels{"regcred.dev/managed": "true"}); err != nil {
			return "", err
		}
		seen := map[string]int{}
		for _, s := range list.Items {
			cfg, err := dockercfg.ParseDockerConfigJSON(s.Data[corev1.DockerConfigJsonKey])
			if err != nil {
				continue
			}
			for _, e := range cfg.Auths {
				seen[e.Password]++
			}
		}
		if len(seen) == 1 && len(list.Items) == want {
			for p := range seen {
				if p != old {
					return p, nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("copies did not converge on one token")
}
