package release_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"regcred.dev/regcred/internal/testenv"
	"regcred.dev/regcred/internal/testenv/fixtures"
)

var metricName = regexp.MustCompile(`\bregcred_[a-z_]+`)

// exportedMetrics are the metric names regcred's code declares.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`Name:\s+"(regcred_[a-z_]+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir(filepath.Join(testenv.RepoRoot(), "internal"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestChartMonitoring renders the PrometheusRule and the Grafana
// dashboard: every regcred metric their expressions use is one regcred
// exports, the thresholds come from the values, and the dashboard is the
// chart's JSON file.
func TestChartMonitoring(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	exported := exportedMetrics(t)
	for _, want := range []string{"regcred_image_pull_failures_total", "regcred_image_pulls_total", "regcred_credential_verified", "regcred_registry_rate_limit_remaining", "regcred_credential_ready"} {
		if !exported[want] {
			t.Fatalf("%s is not declared; found %v", want, exported)
		}
	}
	objs := objects(t, render(t, testenv.Tool(t, "helm3"), "--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.grafanaDashboard.enabled=true",
		"--set", "metrics.prometheusRule.tokenExpiryWarning=2h", "--set", "metrics.pullFailures=false"))

	var rule *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "PrometheusRule" {
			rule = o
		}
	}
	if rule == nil {
		t.Fatal("no PrometheusRule")
	}
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	var alerts []string
	exprs := map[string]string{}
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			m := r.(map[string]any)
			alerts = append(alerts, m["alert"].(string))
			exprs[m["alert"].(string)] = m["expr"].(string)
		}
	}
	sort.Strings(alerts)
	if want := []string{"RegcredCredentialNotReady", "RegcredCredentialNotVerified", "RegcredDockerHubPullsLow", "RegcredImagePullFailures", "RegcredImagePullSuccessRateLow", "RegcredTokenExpiringSoon"}; !slices.Equal(alerts, want) {
		t.Errorf("alerts %v, want %v", alerts, want)
	}
	if !strings.HasSuffix(exprs["RegcredTokenExpiringSoon"], "< 7200") {
		t.Errorf("tokenExpiryWarning=2h gives %q", exprs["RegcredTokenExpiringSoon"])
	}
	for alert, expr := range exprs {
		for _, name := range metricName.FindAllString(expr, -1) {
			if !exported[name] {
				t.Errorf("alert %s uses %s, which regcred does not export", alert, name)
			}
		}
	}

	var cm corev1.ConfigMap
	if !find(t, objs, "ConfigMap", &cm) {
		t.Fatal("no dashboard ConfigMap")
	}
	file, panels := fixtures.Dashboard(t)
	if strings.TrimSpace(cm.Data["regcred.json"]) != strings.TrimSpace(string(file)) || cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("the ConfigMap does not hold dashboards/regcred.json with the sidecar's label: labels %v", cm.Labels)
	}
	for _, p := range panels {
		for _, tg := range p.Targets {
			for _, name := range metricName.FindAllString(tg.Expr, -1) {
				if !exported[name] {
					t.Errorf("panel %q uses %s, which regcred does not export", p.Title, name)
				}
			}
		}
	}

	var d appsv1.Deployment
	find(t, objs, "Deployment", &d)
	if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--pull-failure-metrics=false") {
		t.Errorf("metrics.pullFailures=false: args %v", d.Spec.Template.Spec.Containers[0].Args)
	}
}

// TestAlertsWithPromtool runs promtool's unit tests
// (testdata/alerts.promtest.yaml) against the alerts the chart renders
// with its default thresholds: each fires when it should and stays quiet
// when it should not. Every alert the chart ships must be seen firing
// there.
func TestAlertsWithPromtool(t *testing.T) {
	testenv.SkipShort(t, "runs Helm and promtool")
	promtool := testenv.Tool(t, "promtool")
	objs := objects(t, render(t, testenv.Tool(t, "helm3"), "--set", "metrics.prometheusRule.enabled=true"))
	i := slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "PrometheusRule" })
	if i < 0 {
		t.Fatal("no PrometheusRule")
	}
	groups, _, _ := unstructured.NestedSlice(objs[i].Object, "spec", "groups")
	rules, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts.promtest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.promtest.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "test", "rules", filepath.Join(dir, "alerts.promtest.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	var spec struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &spec); err != nil {
		t.Fatal(err)
	}
	firing := map[string]bool{}
	for _, tc := range spec.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			}
		}
	}
	for _, g := range groups {
		rs, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rs {
			if name, _ := r.(map[string]any)["alert"].(string); name != "" && !firing[name] {
				t.Errorf("alert %s has no promtool test that sees it fire", name)
			}
		}
	}
}
