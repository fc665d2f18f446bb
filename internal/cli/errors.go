package cli

import "fmt"

// Exit codes shared by every command.
const (
	// exitFailure: the command ran and found a failure (check: the pull
	// would fail), or could not reach what it needed.
	exitFailure = 1
	// exitUsage: the input is invalid (flags, arguments, files).
	exitUsage = 2
)

// usageError marks invalid input: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }
func (e *usageError) ExitCode() int { return exitUsage }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// silentError carries an exit code for a failure the command already
// reported on its output.
type silentError struct{ code int }

func (e *silentError) Error() string { return "" }
func (e *silentError) ExitCode() int { return e.code }
