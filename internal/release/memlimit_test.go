package release_test

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"regcred.dev/regcred/internal/testenv"
)

// The manager's Go runtime follows the container's memory limit: the
// chart sets a limit and leaves GOMEMLIMIT unset, so the manager takes its
// share of the limit from the cgroup (internal/cli's goMemLimitRatio). A
// GOMEMLIMIT of the whole limit would let the heap grow into the kernel's
// OOM kill before the collector pushed back.
func TestChartLeavesGoMemoryLimitToTheManager(t *testing.T) {
	testenv.SkipShort(t, "runs Helm")
	var d appsv1.Deployment
	if !find(t, objects(t, render(t, testenv.Tool(t, "helm3"))), "Deployment", &d) {
		t.Fatal("the chart has no Deployment")
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s has no memory limit", c.Name)
		}
		for _, e := range c.Env {
			if e.Name == "GOMEMLIMIT" || e.Name == "AUTOMEMLIMIT" {
				t.Errorf("container %s sets %s: %+v", c.Name, e.Name, e)
			}
		}
	}
}
