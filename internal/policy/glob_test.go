package policy

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestGlobLabel(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		match   []string
		miss    []string
	}{
		{"*", []string{"", "abc", "::1"}, nil},
		{"a?c", []string{"abc", "a-c"}, []string{"ac", "abbc"}},
		{"[a-c]x", []string{"ax", "cx"}, []string{"dx", "x"}},
		{"[^a]x", []string{"bx"}, []string{"ax"}},
		{"[.a]", []string{"a"}, []string{"b"}},
		{"[.]", nil, []string{"a", ""}},
		{`\*`, []string{"*"}, []string{"a"}},
		{"a|b", nil, []string{"a|b", "a"}},
		{"d*", []string{"d", "dzz"}, []string{"e"}},
	} {
		re, ok := globLabel(tc.pattern)
		if !ok {
			t.Fatalf("%q: refused", tc.pattern)
		}
		rx := regexp.MustCompile("^" + re + "$")
		for _, s := range tc.match {
			if !rx.MatchString(s) {
				t.Errorf("%q (%s) does not match %q", tc.pattern, re, s)
			}
		}
		for _, s := range tc.miss {
			if rx.MatchString(s) {
				t.Errorf("%q (%s) matches %q", tc.pattern, re, s)
			}
		}
	}
	for _, bad := range []string{"[", "[]", "a\\", "[a-", "[^]"} {
		if _, ok := globLabel(bad); ok {
			t.Errorf("%q accepted; filepath.Match refuses it", bad)
		}
	}
}

// FuzzGlobLabel checks the translation against filepath.Match on labels
// (which never hold a dot, a slash or the separator).
func FuzzGlobLabel(f *testing.F) {
	for _, s := range [][2]string{{"*", "abc"}, {"[a-c]?", "bz"}, {"[^x-z]", "a"}, {`\[`, "["}, {"[.-0]", "/"}, {"*[!]", "!"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, label string) {
		if !utf8.ValidString(pattern) || !utf8.ValidString(label) || strings.ContainsAny(label, "./|") {
			return
		}
		want, err := filepath.Match(pattern, label)
		re, ok := globLabel(pattern)
		if err != nil {
			if ok {
				t.Fatalf("%q: filepath.Match refuses it (%v), translated to %s", pattern, err, re)
			}
			return
		}
		if !ok {
			t.Fatalf("%q: refused, filepath.Match accepts it", pattern)
		}
		got := regexp.MustCompile("^" + re + "$").MatchString(label)
		if got != want {
			t.Fatalf("%q on %q: regexp %s says %v, filepath.Match %v", pattern, label, re, got, want)
		}
	})
}
