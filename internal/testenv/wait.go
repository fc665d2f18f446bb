package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Eventually polls check until it returns nil, failing the test with the
// last error when timeout passes. The timeout is a deadline for a hung
// test, not a performance assertion: latency is measured by benchmarks.
func Eventually(t testing.TB, timeout time.Duration, check func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		err := check(ctx)
		if err == nil {
			return
		}
		// A check cut short by the deadline says less than the one before.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met within %s: %v", timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Condition is a check for Eventually that passes once holds returns true;
// what names the awaited state for the failure message.
func Condition(what string, holds func() bool) func(context.Context) error {
	return func(context.Context) error {
		if holds() {
			return nil
		}
		return fmt.Errorf("still waiting for %s", what)
	}
}
