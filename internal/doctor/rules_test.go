package doctor

import (
	"slices"
	"testing"

	"regcred.dev/regcred/internal/credential"
)

// The rule names are how a person refers to a check: each names one.
func TestRuleNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range slices.Concat(findingRules, deliveryRules, nodeDeliveryRules) {
		if r.name == "" || seen[r.name] {
			t.Errorf("rule name %q empty or used twice", r.name)
		}
		seen[r.name] = true
	}
}

// The delivery rules end in one that always concludes, so every finding
// has a diagnosis.
func TestLastDeliveryRuleConcludes(t *testing.T) {
	f := newFixture()
	pc := newPodContext(f.s, f.pod)
	v := pc.view(credential.Compile(credential.FromCluster(f.cred), f.s.RegcredNamespace))
	e := &evidence{pc: pc, out: &Finding{}, cred: &v}
	if last := deliveryRules[len(deliveryRules)-1]; !last.diagnose(e) || e.out.Diagnosis != DiagWebhookNotCalled {
		t.Errorf("last delivery rule %s concluded %q", last.name, e.out.Diagnosis)
	}
}

// The node delivery rules end in one that always concludes too.
func TestLastNodeRuleConcludes(t *testing.T) {
	f := nodeFixture()
	pc := newPodContext(f.s, f.pod)
	v := pc.view(credential.Compile(credential.FromCluster(f.cred), f.s.RegcredNamespace))
	e := &evidence{pc: pc, out: &Finding{}, cred: &v}
	if last := nodeDeliveryRules[len(nodeDeliveryRules)-1]; !last.diagnose(e) || e.out.Diagnosis != DiagBrokerNotAsked {
		t.Errorf("last node delivery rule %s concluded %q", last.name, e.out.Diagnosis)
	}
}
