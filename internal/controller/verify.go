package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/dockercfg"
	"regcred.dev/regcred/internal/egress"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/redact"
	"regcred.dev/regcred/internal/registry"
)

// verifyTimeout bounds one probe, which runs inside a reconcile.
const verifyTimeout = 10 * time.Second

// recordRetry is how soon a probe whose recording failed is tried again.
const recordRetry = 5 * time.Second

// recordProbe writes st, the probe about to run, into c's status.
func (r *CredentialReconciler) recordProbe(ctx context.Context, c *credential.Credential, st *v1alpha1.VerifyStatus) error {
	return r.updateStatus(ctx, c, func(s *v1alpha1.CredentialStatus) { s.Verify = st })
}

// verifier probes credentials with spec.verify. Probes run in the
// credential reconciler, on the leader only, and the time of the last one
// is kept in the status: a new leader waits out the interval too, so a
// credential is never probed more than once per interval.
type verifier struct {
	options []registry.Option
	now     func() time.Time
	// tenantGuard refuses a RegistryCredential's probe of loopback,
	// link-local and private addresses: the tenant picks the image, and
	// the manager's network position is not theirs to use.
	tenantGuard *egress.Guard
	// record writes a probe into the status before it runs, so that a
	// probe that crashes the manager is not run again by its successor
	// before the interval is up.
	record func(ctx context.Context, c *credential.Credential, st *v1alpha1.VerifyStatus) error

	// last is each credential's latest probe, for when its status write
	// was lost (a conflict): the result is written again rather than the
	// registry probed again.
	mu   sync.Mutex
	last map[types.UID]probeResult
}

type probeResult struct {
	cond metav1.Condition
	st   *v1alpha1.VerifyStatus
}

// result is c's Verified condition and status: a new probe when one is
// due, the latest one when its status write was lost, or nil when the
// status holds the latest; next is when the next probe is due.
func (v *verifier) result(ctx context.Context, c *credential.Credential, data []byte) (*metav1.Condition, *v1alpha1.VerifyStatus, time.Time) {
	interval := verifyInterval(c)
	if st := c.Status.Verify; st != nil && st.ProbedAt != nil && v.now().Before(st.ProbedAt.Add(interval)) {
		return nil, nil, st.ProbedAt.Add(interval)
	}
	v.mu.Lock()
	last, ok := v.last[c.Object.GetUID()]
	v.mu.Unlock()
	if ok && v.now().Before(last.st.ProbedAt.Add(interval)) {
		return &last.cond, last.st, last.st.ProbedAt.Add(interval)
	}
	if v.record != nil {
		now := v.now()
		planned := &v1alpha1.VerifyStatus{ProbedAt: timeOf(now), NextProbeAt: timeOf(now.Add(interval)), Image: c.Spec.Verify.Image}
		if c.Status.Verify != nil {
			planned.RateLimitRemaining = c.Status.Verify.RateLimitRemaining
		}
		if err := v.record(ctx, c, planned); err != nil {
			// Unrecorded, the probe does not run: try again shortly.
			return nil, nil, now.Add(recordRetry)
		}
	}
	cond, st := v.probe(ctx, c, data)
	v.mu.Lock()
	if v.last == nil {
		v.last = map[types.UID]probeResult{}
	}
	v.last[c.Object.GetUID()] = probeResult{cond, st}
	v.mu.Unlock()
	return &cond, st, st.NextProbeAt.Time
}

// forget drops a deleted credential's latest probe.
func (v *verifier) forget(uid types.UID) {
	v.mu.Lock()
	delete(v.last, uid)
	v.mu.Unlock()
}

func verifyInterval(c *credential.Credential) time.Duration {
	if d := c.Spec.Verify.Interval.Duration; d >= time.Minute {
		return d
	}
	if c.Spec.Verify.Interval.Duration == 0 {
		return time.Hour
	}
	return time.Minute
}

// probe checks the rendered docker config against the registry of the
// spec's image the way a pull starts, and returns the Verified condition
// and the status to record.
func (v *verifier) probe(ctx context.Context, c *credential.Credential, data []byte) (metav1.Condition, *v1alpha1.VerifyStatus) {
	now := v.now()
	image := c.Spec.Verify.Image
	st := &v1alpha1.VerifyStatus{ProbedAt: timeOf(now), NextProbeAt: timeOf(now.Add(verifyInterval(c))), Image: image}
	cond := metav1.Condition{Type: v1alpha1.ConditionVerified, Status: metav1.ConditionFalse, ObservedGeneration: c.Object.GetGeneration()}
	named, err := keyring.ParseImage(image)
	if err != nil {
		cond.Reason, cond.Message = string(registry.Other), fmt.Sprintf("spec.verify.image: %v", err)
		return cond, st
	}
	cfg, err := dockercfg.ParseDockerConfigJSON(data)
	if err != nil {
		cond.Reason, cond.Message = string(registry.Other), "the rendered config cannot be read"
		return cond, st
	}
	kr := &keyring.Keyring{}
	kr.Add(c.Key.String(), cfg)
	candidates := kr.Lookup(named.Name())
	if len(candidates) == 0 {
		cond.Reason = v1alpha1.ReasonNoCredential
		cond.Message = fmt.Sprintf("no registry of the credential covers %s: add its registry to spec.registries or probe another image", image)
		return cond, st
	}
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	last, ok := v.try(ctx, c, image, candidates)
	cond.Reason = string(last.Reason)
	if ok {
		cond.Status = metav1.ConditionTrue
		cond.Message = fmt.Sprintf("the registry accepted %s for %s (manifest %s)", last.Username, image, last.Digest)
	} else {
		cond.Message = fmt.Sprintf("%s: %s", last.Message, last.Hint)
	}
	cond.Message = redact.Message(cond.Message, secretsOf(candidates)...)
	if rl := last.RateLimit; rl != nil {
		n := int32(rl.Remaining)
		st.RateLimitRemaining = &n
		rateLimitRemaining.WithLabelValues(keyHost(named.String())).Set(float64(rl.Remaining))
	}
	return cond, st
}

// try probes with each candidate in turn until one works. Plain HTTP is
// allowed only for a candidate whose own registry key says http://; a
// tenant's probe is guarded.
func (v *verifier) try(ctx context.Context, c *credential.Credential, image string, candidates []keyring.Credential) (registry.Attempt, bool) {
	opts := append([]registry.Option{registry.WithTimeout(verifyTimeout)}, v.options...)
	opts = append(opts, registry.WithInsecureFromKey())
	if c.Kind == credential.KindNamespaced {
		guard := v.tenantGuard
		if guard == nil {
			guard = &egress.Guard{}
		}
		opts = append(opts, registry.WithGuard(guard))
	}
	res := registry.Try(ctx, image, candidates, opts...)
	return res.Attempts[len(res.Attempts)-1], res.PullWouldSucceed
}

func secretsOf(candidates []keyring.Credential) []redact.Secret {
	out := make([]redact.Secret, 0, 2*len(candidates))
	for _, c := range candidates {
		out = append(out, redact.Secret{Username: c.Username, Password: c.Password}, redact.Secret{Username: c.Username, Password: c.IdentityToken})
	}
	return out
}
