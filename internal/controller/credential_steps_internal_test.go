package controller

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRunSteps: a stalled source lets the later steps run, waiting and
// finalized stop the reconcile, an error stops it at once, and the soonest
// requeue wins.
func TestRunSteps(t *testing.T) {
	ran := 0
	step := func(res stepResult, err error) credentialStep {
		return func(context.Context, *credentialState) (stepResult, error) {
			ran++
			return res, err
		}
	}
	in := func(d time.Duration) stepResult { return stepResult{requeueAfter: d} }
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		steps   []credentialStep
		want    stepResult
		wantErr error
		wantRan int
	}{
		{"all continue", []credentialStep{step(continueSteps, nil), step(continueSteps, nil)}, continueSteps, nil, 2},
		{"stalled goes on", []credentialStep{step(stalledOnSource, nil), step(continueSteps, nil)}, stalledOnSource, nil, 2},
		{"waiting stops", []credentialStep{step(waitingForCleanup, nil), step(continueSteps, nil)}, waitingForCleanup, nil, 1},
		{"finalized stops", []credentialStep{step(finalized, nil), step(continueSteps, nil)}, finalized, nil, 1},
		{"error stops", []credentialStep{step(continueSteps, boom), step(continueSteps, nil)}, stepResult{}, boom, 1},
		{"soonest requeue", []credentialStep{step(in(time.Hour), nil), step(in(time.Minute), nil), step(continueSteps, nil)}, in(time.Minute), nil, 3},
	} {
		ran = 0
		got, err := runSteps(context.Background(), &credentialState{}, tc.steps)
		if got != tc.want || !errors.Is(err, tc.wantErr) || ran != tc.wantRan {
			t.Errorf("%s: got %+v, %v after %d steps; want %+v, %v after %d", tc.name, got, err, ran, tc.want, tc.wantErr, tc.wantRan)
		}
	}
}
