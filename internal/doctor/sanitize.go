package doctor

import "regcred.dev/regcred/internal/redact"

// Sanitize makes text that came from the cluster or a registry safe to
// print on a terminal as one line (redact.Printable): whoever can write a
// Pod, an Event or a registry's answer cannot rewrite what `regcred
// doctor` shows.
func Sanitize(s string) string { return redact.Printable(s) }
