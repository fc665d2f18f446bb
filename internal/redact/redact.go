// Package redact makes text that came from a server or an error chain
// safe to put in a condition, an Event, status.failures or a log: secrets
// removed in every form a server could echo them in, control characters
// stripped, and the length bounded.
package redact

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxMessage bounds a message, in bytes.
const MaxMessage = 1024

// Placeholder replaces a secret.
const Placeholder = "<redacted>"

// minSecret: shorter values would redact ordinary words.
const minSecret = 3

// Secret is what to remove: a password (or token) and the user name it
// pairs with, if any, for the base64 of "user:password" in Basic auth.
type Secret struct {
	Username string
	Password string
}

// Message returns s with every form of each secret replaced, control and
// format characters removed, and cut to MaxMessage bytes on a rune
// boundary with "…".
func Message(s string, secrets ...Secret) string {
	forms := Forms(secrets...)
	s = replace(s, forms)
	s = Printable(s)
	// Stripping can join a secret split by control characters.
	s = replace(s, forms)
	return Truncate(s, MaxMessage)
}

// Forms lists the encodings of the secrets a server could echo, longest
// first so that a longer form is replaced before a shorter one inside it.
func Forms(secrets ...Secret) []string {
	seen := map[string]bool{}
	var out []string
	add := func(v string) {
		if len(v) >= minSecret && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	for _, sec := range secrets {
		if len(sec.Password) < minSecret {
			continue
		}
		// An empty user name is still sent as ":password" in Basic auth.
		for _, v := range []string{sec.Password, sec.Username + ":" + sec.Password} {
			for _, f := range encodings(v) {
				add(f)
			}
		}
		for _, f := range base64Inner(sec.Password) {
			add(f)
		}
	}
	// Longest first.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && len(out[j]) > len(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func encodings(v string) []string {
	out := []string{v,
		base64.StdEncoding.EncodeToString([]byte(v)), base64.RawStdEncoding.EncodeToString([]byte(v)),
		base64.URLEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)),
		url.QueryEscape(v), url.PathEscape(v), lowerHex(url.QueryEscape(v)), lowerHex(url.PathEscape(v)),
	}
	if b, err := json.Marshal(v); err == nil {
		out = append(out, strings.Trim(string(b), `"`))
	}
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		out = append(out, strings.Trim(strings.TrimSpace(sb.String()), `"`))
	}
	out = append(out, strings.Trim(strconv.Quote(v), `"`), strings.Trim(strconv.QuoteToASCII(v), `"`))
	return out
}

// base64Inner is the part of the base64 of v that is the same wherever v
// sits in a longer encoded text (three alignments, both alphabets): a
// server echoing a base64 blob that holds the secret somewhere inside
// (a Basic header of "user:password", a JSON document) loses that part.
func base64Inner(v string) []string {
	var out []string
	for pad := 0; pad < 3; pad++ {
		src := strings.Repeat("\x00", pad) + v
		full := len(src) / 3 * 3
		// Skip the group the padding shares, keep whole groups only.
		start := 0
		if pad > 0 {
			start = 4
		}
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			e := enc.EncodeToString([]byte(src[:full]))
			if start < len(e) {
				out = append(out, e[start:])
			}
		}
	}
	return out
}

// lowerHex writes the %XX escapes of s in lower case, as some servers
// re-escape.
func lowerHex(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = lower(b[i+1]), lower(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

func replace(s string, forms []string) string {
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, Placeholder)
	}
	return s
}

// Truncate cuts s to at most max bytes on a rune boundary, ending in "…".
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const ellipsis = "…"
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
