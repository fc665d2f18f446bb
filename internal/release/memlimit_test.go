package release_test

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"regcred.dev/regcred/internal/testenv"
)

// The manager's Go runtime knows the container's memory limit: a burst of
// garbage (an informer's first list of what tenants wrote) is collected
// before it reaches the limit instead of getting every replica killed.
func TestChartSetsGoMemoryLimit(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	var d appsv1.Deployment
	if !find(t, objects(t, render(t, testenv.Tool(t, "helm3"))), "Deployment", &d) {
		t.Fatal("the chart has no Deployment")
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if e.Name != "GOMEMLIMIT" {
				continue
			}
			if e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
				t.Errorf("container %s: GOMEMLIMIT is not its memory limit: %+v", c.Name, e)
			}
			return
		}
	}
	t.Error("no container sets GOMEMLIMIT")
}
