package redact

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Printable makes text that came from the cluster or a registry (names,
// images, Event messages, a registry's answer) safe to print on a
// terminal, or to put in a condition, as one line: ANSI escape sequences
// are dropped whole, other control characters (C0, DEL, C1) are dropped, except that tabs and line
// breaks become spaces (a value cannot start a line of its own, nor
// overwrite one with \r), Unicode format characters (bidi overrides and
// isolates, zero-width characters) are dropped, and invalid UTF-8 becomes
// U+FFFD. Whoever can write a Pod, an Event or a registry's answer cannot
// so rewrite what regcred shows.
func Printable(s string) string {
	if isPlain(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if s[i] == 0x1b {
			i += escapeLen(s[i:])
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' || r == 0x85 || r == '\u2028' || r == '\u2029':
			b.WriteByte(' ')
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isPlain: printable ASCII only, the common case.
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// escapeLen is the length of the escape sequence at the start of s (which
// starts with ESC): CSI (ESC [ parameters intermediates final), OSC and
// the other string sequences (ESC ] P X ^ _ ... up to BEL or ESC \), or
// ESC, intermediates and one more character.
func escapeLen(s string) int {
	if len(s) < 2 {
		return len(s)
	}
	switch s[1] {
	case '[':
		i := 2
		for i < len(s) && s[i] >= 0x20 && s[i] <= 0x3f {
			i++
		}
		if i < len(s) && s[i] >= 0x40 && s[i] <= 0x7e {
			i++
		}
		return i
	case ']', 'P', 'X', '^', '_':
		for i := 2; i < len(s); i++ {
			if s[i] == 0x07 {
				return i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
		}
		return len(s)
	default:
		// ESC, intermediates (0x20-0x2f, as in ESC ( B), one final.
		i := 1
		for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f {
			i++
		}
		if i < len(s) {
			_, size := utf8.DecodeRuneInString(s[i:])
			i += size
		}
		return i
	}
}
