// Package doctor explains why the kubelet fails to pull a Pod's images. It
// reads what the kubelet said (the container's waiting state and its
// Events), classifies it, and correlates it with what regcred knows: the
// Pod's pull Secrets, its ServiceAccount, the credentials that cover the
// image and why none reached the Pod. Diagnose is a pure function of a
// Snapshot; Collect fills one from the API server. The diagnosis is an
// ordered list of named rules (rules.go, delivery.go, node.go for
// credentials delivered to nodes): the first that concludes explains the
// finding.
package doctor

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"regcred.dev/regcred/internal/credential"
)

// Diagnose explains every failing pull of the snapshot's Pods.
func Diagnose(s *Snapshot, scope string) *Report {
	r := &Report{APIVersion: APIVersion, Scope: scope, Findings: []Finding{}, Notes: s.Notes}
	cat := compile(s)
	for _, pod := range s.Pods {
		r.PodsChecked++
		fs := diagnosePod(s, cat, pod)
		if len(fs) > 0 {
			r.PodsFailing++
			r.Findings = append(r.Findings, fs...)
		}
	}
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod))
	})
	return r
}

// compile is the snapshot's credentials compiled once, for every finding
// of every Pod.
func compile(s *Snapshot) *credential.Catalogue {
	cat := credential.NewCatalogue(s.RegcredNamespace)
	for _, c := range s.Credentials {
		cat.Put(c.Object)
	}
	return cat
}

func diagnosePod(s *Snapshot, cat *credential.Catalogue, pod *corev1.Pod) []Finding {
	if !candidate(pod) || !pod.DeletionTimestamp.IsZero() {
		return nil
	}
	pc := newPodContext(s, pod)
	pc.catalogue = cat
	fails := failingImages(pod, s.Events[pod.UID], pc.badPull != nil)
	if len(fails) == 0 {
		return nil
	}
	var out []Finding
	for _, f := range fails {
		out = append(out, pc.diagnose(f))
	}
	return out
}
