package webhook

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"regcred.dev/regcred/api/v1alpha1"
)

// rebuildsAcross counts the snapshot rebuilds that one informer update
// from old to updated causes, through the handler WatchForChanges adds.
func rebuildsAcross(t *testing.T, h *Handler, old, updated any) int {
	t.Helper()
	before, err := h.snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h.changeHandler().OnUpdate(old, updated)
	after, err := h.snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		return 1
	}
	return 0
}

func TestSnapshotNotRebuiltForStatusOnlyUpdates(t *testing.T) {
	h, _ := newHandler(t, fixtures()...)
	base := &v1alpha1.ClusterRegistryCredential{ObjectMeta: metav1.ObjectMeta{Name: "c", Generation: 3,
		Labels: map[string]string{"a": "1"}, Annotations: map[string]string{"n": "1"}}}

	status := base.DeepCopy()
	status.ResourceVersion = "2"
	status.Status.Namespaces.Synced = 40
	status.Status.Token = &v1alpha1.TokenStatus{RefreshedAt: &metav1.Time{Time: time.Now()}}
	rebuilds := 0
	for range 100 { // a hundred token refreshes and namespace counts
		rebuilds += rebuildsAcross(t, h, base, status)
	}
	if rebuilds != 0 {
		t.Errorf("status-only updates rebuilt the snapshot %d times, want 0", rebuilds)
	}

	spec := base.DeepCopy()
	spec.Generation = 4
	labels := base.DeepCopy()
	labels.Labels["a"] = "2"
	annotations := base.DeepCopy()
	annotations.Annotations = nil
	deleting := base.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	for name, updated := range map[string]any{"spec": spec, "labels": labels, "annotations": annotations, "deletion": deleting} {
		if n := rebuildsAcross(t, h, base, updated); n != 1 {
			t.Errorf("a %s change rebuilt the snapshot %d times, want 1", name, n)
		}
	}
}
