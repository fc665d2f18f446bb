package policy

import (
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"
)

// globLabel translates one host label of a registry key, a pattern of
// path/filepath.Match as the kubelet matches it, into an RE2 expression
// that matches exactly the labels the pattern matches. A target label
// never holds a dot (labels are split at dots) nor the target string's
// field separator, so no part of the expression may match either: that
// keeps each label of the expression aligned with one label of the
// target. ok is false for a pattern filepath.Match rejects; the kubelet
// then never matches the key.
func globLabel(pattern string) (re string, ok bool) {
	if _, err := filepath.Match(pattern, ""); err != nil {
		return "", false
	}
	var b strings.Builder
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			b.WriteString(`[^.|]*`)
			pattern = pattern[1:]
		case '?':
			b.WriteString(`[^.|]`)
			pattern = pattern[1:]
		case '[':
			class, rest, ok := globClass(pattern[1:])
			if !ok {
				return "", false
			}
			b.WriteString(class)
			pattern = rest
		case '\\':
			if len(pattern) < 2 {
				return "", false
			}
			r, n := utf8.DecodeRuneInString(pattern[1:])
			b.WriteString(literal(r))
			pattern = pattern[1+n:]
		default:
			r, n := utf8.DecodeRuneInString(pattern)
			b.WriteString(literal(r))
			pattern = pattern[n:]
		}
	}
	return b.String(), true
}

// literal is one character matched as itself; a dot or the separator
// never occurs inside a label, so they match nothing.
func literal(r rune) string {
	if r == '.' || r == '|' {
		return `[^\x00-\x{10FFFF}]`
	}
	return regexp.QuoteMeta(string(r))
}

// globClass translates a character class after its "[", by
// filepath.Match's grammar, into an RE2 class without the dot and the
// separator, and returns what follows the class's "]".
func globClass(s string) (class, rest string, ok bool) {
	negated := false
	if strings.HasPrefix(s, "^") {
		negated = true
		s = s[1:]
	}
	type span struct{ lo, hi rune }
	var spans []span
	char := func() (rune, bool) {
		if s == "" {
			return 0, false
		}
		if s[0] == '\\' {
			s = s[1:]
			if s == "" {
				return 0, false
			}
		} else if s[0] == '-' || s[0] == ']' {
			return 0, false
		}
		r, n := utf8.DecodeRuneInString(s)
		s = s[n:]
		return r, true
	}
	for first := true; ; first = false {
		if s == "" {
			return "", "", false
		}
		if s[0] == ']' && !first {
			s = s[1:]
			break
		}
		lo, ok := char()
		if !ok {
			return "", "", false
		}
		hi := lo
		if strings.HasPrefix(s, "-") {
			s = s[1:]
			if hi, ok = char(); !ok {
				return "", "", false
			}
		}
		if lo <= hi {
			spans = append(spans, span{lo, hi})
		}
	}
	var b strings.Builder
	b.WriteByte('[')
	if negated {
		// Everything but the spans, the dot and the separator.
		b.WriteString(`^.|`)
		for _, sp := range spans {
			writeSpan(&b, sp.lo, sp.hi)
		}
	} else {
		// The spans less the dot and the separator; an empty class is a
		// character that cannot occur.
		n := 0
		for _, sp := range spans {
			for _, part := range cut(sp.lo, sp.hi, '.', '|') {
				writeSpan(&b, part[0], part[1])
				n++
			}
		}
		if n == 0 {
			return `[^\x00-\x{10FFFF}]`, s, true
		}
	}
	b.WriteByte(']')
	return b.String(), s, true
}

// cut removes the given characters from the span lo-hi.
func cut(lo, hi rune, remove ...rune) [][2]rune {
	parts := [][2]rune{{lo, hi}}
	for _, r := range remove {
		var next [][2]rune
		for _, p := range parts {
			switch {
			case r < p[0] || r > p[1]:
				next = append(next, p)
			default:
				if p[0] < r {
					next = append(next, [2]rune{p[0], r - 1})
				}
				if r < p[1] {
					next = append(next, [2]rune{r + 1, p[1]})
				}
			}
		}
		parts = next
	}
	return parts
}

func writeSpan(b *strings.Builder, lo, hi rune) {
	b.WriteString(classChar(lo))
	if hi != lo {
		b.WriteByte('-')
		b.WriteString(classChar(hi))
	}
}

// classChar writes a character inside an RE2 class as a code point
// escape: nothing a key holds can close the class or start a range.
func classChar(r rune) string {
	return `\x{` + strings.ToUpper(strconvHex(r)) + `}`
}

func strconvHex(r rune) string {
	const digits = "0123456789abcdef"
	if r == 0 {
		return "0"
	}
	var buf [8]byte
	i := len(buf)
	for v := uint32(r); v > 0; v >>= 4 {
		i--
		buf[i] = digits[v&0xf]
	}
	return string(buf[i:])
}
