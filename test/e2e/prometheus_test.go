package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/fixtures"
	"regcred.dev/regcred/internal/testenv/testregistry"
)

// prometheusJudges: a Prometheus server (Debian's, unpacked by make
// tools) scrapes the manager of this process every second and evaluates
// the alerts the chart renders, with thresholds from values. A real pull
// failure on the node puts RegcredImagePullFailures in pending, and every
// panel query of the shipped dashboard parses and returns data.
func (e env) prometheusJudges(t *testing.T) {
	prometheus := testenv.Tool(t, "prometheus")
	helm := testenv.Tool(t, "helm3")

	// The manager's metrics, as its --metrics-bind-address serves them.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	// The chart's alerts: any failed pull counts, and pending lasts a
	// minute before firing.
	out, err := exec.Command(helm, "template", "regcred", filepath.Join(testenv.RepoRoot(), "charts", "regcred"), "--kube-version", testenv.KubeVersion(),
		"--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.prometheusRule.pullFailuresPer15m=0", "--set", "metrics.prometheusRule.pullFailuresFor=1m",
		"--show-only", "templates/prometheusrule.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	var rule unstructured.Unstructured
	if err := yaml.Unmarshal(out, &rule.Object); err != nil {
		t.Fatal(err)
	}
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	rules, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [rules.yaml]
scrape_configs:
  - job_name: regcred
    static_configs: [{targets: [%q]}]
`, ln.Addr().String())
	for name, content := range map[string][]byte{"rules.yaml": rules, "prometheus.yml": []byte(config)} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	logs, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	cmd := exec.Command(prometheus, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("prometheus log:\n%s", tail(string(b), 4000))
		}
	})
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1/", port)
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		var up []promSample
		if err := promGet(ctx, api, "query", url.Values{"query": {`up{job="regcred"}`}}, &up); err != nil {
			return err
		}
		if len(up) != 1 || up[0].Value[1] != "1" {
			return fmt.Errorf("the manager is not scraped yet: %v", up)
		}
		return nil
	})

	// A cloud credential, for the token panels, and a Pod that pulls with
	// it while Prometheus watches, for the success rate.
	reg := e.ownRegistry(t, testregistry.Token)
	_, source, _ := e.fakeECR(t, reg, "e2e-prometheus-aws")
	sel := labels("e2e", "prometheus")
	cred := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "e2e-prometheus-ecr"}}
	cred.Spec.Registries = []string{reg.Host}
	cred.Spec.Source.ECR = source
	cred.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: sel}
	e.create(t, cred)
	t.Cleanup(func() { e.deleteAndWait(t, cred) })
	ns := e.namespace(t, "prometheus", sel)
	e.create(t, pod(ns, "pulls", reg.Ref("app:1")))
	e.waitRunning(t, ns, "pulls")
	// A counter's series starts at its first pull, which rate() cannot
	// see: a second pull once Prometheus holds the series.
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		var got []promSample
		if err := promGet(ctx, api, "query", url.Values{"query": {fmt.Sprintf(`regcred_image_pulls_total{registry=%q,result="success"}`, reg.Host)}}, &got); err != nil {
			return err
		}
		if len(got) == 0 {
			return fmt.Errorf("Prometheus has no successful pull from %s yet", reg.Host)
		}
		return nil
	})
	e.create(t, pod(ns, "pulls-again", reg.Ref("app:1")))
	e.waitRunning(t, ns, "pulls-again")
	// A credential whose spec.verify probe meets a registry's rate limit,
	// for the rate-limit panel: the manager's own probe, from the host,
	// to a plain-HTTP registry its key allows ("http://").
	limited := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("ratelimit-limit", "100;w=21600")
		w.Header().Set("ratelimit-remaining", "7;w=21600")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}`))
	}))
	t.Cleanup(limited.Close)
	limitedKey := "http://" + strings.TrimPrefix(limited.URL, "http://")
	auth, err := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{limitedKey: {Username: "robot", Password: "not-used"}}}).MarshalDockerConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	robot := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNS, Name: "e2e-prometheus-limited"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: auth}}
	e.create(t, robot)
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), robot) })
	probed := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "e2e-prometheus-limited"}}
	probed.Spec.Registries = []string{limitedKey}
	probed.Spec.Source.SecretRef = &v1alpha1.SecretReference{Name: robot.Name}
	probed.Spec.Verify = &v1alpha1.Verify{Image: strings.TrimPrefix(limited.URL, "http://") + "/ratelimited/app:1", Interval: metav1.Duration{Duration: time.Hour}}
	probed.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: labels("e2e", "nowhere")}
	e.create(t, probed)
	t.Cleanup(func() { e.deleteAndWait(t, probed) })
	testenv.Eventually(t, 2*time.Minute, func(ctx context.Context) error {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(probed), probed); err != nil {
			return err
		}
		if v := probed.Status.Verify; v == nil || v.RateLimitRemaining == nil {
			return fmt.Errorf("no rate limit seen by the probe yet: verify %+v, conditions %+v", probed.Status.Verify, probed.Status.Conditions)
		}
		return nil
	})

	// And a pull that fails, under labels of its own (the tenant's key,
	// with a wrong password), so the alert cannot have started earlier.
	stranger := e.ownRegistry(t, testregistry.Basic)
	e.tenantCredential(t, ns, "wrong", stranger.Host, stranger.User.Name, "not-the-password")
	e.waitSynced(t, &v1alpha1.RegistryCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wrong"}})
	e.create(t, pod(ns, "fails", stranger.Ref("app:1")))

	testenv.Eventually(t, 3*time.Minute, func(ctx context.Context) error {
		var alerts struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		}
		if err := promGet(ctx, api, "alerts", nil, &alerts); err != nil {
			return err
		}
		for _, a := range alerts.Alerts {
			// Pending for a minute (for: 1m), then firing: a busy
			// machine may look late.
			if a.Labels["alertname"] == "RegcredImagePullFailures" && (a.State == "pending" || a.State == "firing") && a.Labels["registry"] == stranger.Host && a.Labels["reason"] == "Unauthorized" {
				t.Logf("RegcredImagePullFailures{registry=%s,reason=Unauthorized} is %s", stranger.Host, a.State)
				return nil
			}
		}
		return fmt.Errorf("RegcredImagePullFailures{registry=%q,reason=Unauthorized} not pending: %+v", stranger.Host, alerts.Alerts)
	})

	// Every panel: the query parses and returns data; the success rate
	// of the registry the Pod pulled from is 1.
	_, panels := fixtures.Dashboard(t)
	queries := 0
	for _, p := range panels {
		for _, target := range p.Targets {
			queries++
			testenv.Eventually(t, 2*time.Minute, func(ctx context.Context) error {
				var result []promSample
				if err := promGet(ctx, api, "query", url.Values{"query": {target.Expr}}, &result); err != nil {
					var bad *promError
					if errors.As(err, &bad) {
						t.Fatalf("panel %q: Prometheus refuses %s: %v", p.Title, target.Expr, err)
					}
					return err
				}
				if len(result) == 0 {
					return fmt.Errorf("panel %q: %s returns nothing", p.Title, target.Expr)
				}
				if strings.Contains(target.Expr, `result="success"`) {
					for _, s := range result {
						if s.Metric["registry"] == reg.Host && s.Value[1] == "1" {
							return nil
						}
					}
					return fmt.Errorf("panel %q: no success rate of 1 for %s: %v", p.Title, reg.Host, result)
				}
				return nil
			})
		}
	}
	t.Logf("Prometheus %s scraped the manager: RegcredImagePullFailures pending, %d panel queries answered", prometheus, queries)
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// promError is Prometheus refusing a request (a query that does not parse).
type promError struct{ kind, msg string }

func (e *promError) Error() string { return e.kind + ": " + e.msg }

// promGet calls Prometheus's HTTP API and decodes data.result (or data).
func promGet(ctx context.Context, api, path string, q url.Values, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if body.Status != "success" {
		if body.ErrorType == "bad_data" {
			return &promError{body.ErrorType, body.Error}
		}
		return fmt.Errorf("%s: %s: %s", path, body.ErrorType, body.Error)
	}
	if path == "query" {
		var data struct {
			Result json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal(body.Data, &data); err != nil {
			return err
		}
		return json.Unmarshal(data.Result, into)
	}
	return json.Unmarshal(body.Data, into)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
