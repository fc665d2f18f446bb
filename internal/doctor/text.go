package doctor

import (
	"fmt"
	"io"
	"strings"
)

// WriteText prints the report for a person: a summary, then for each
// failing image its cause in one line and the fix as a command. Every
// line goes through Sanitize: names, images, Event messages and
// registries' answers are written by others.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	for _, n := range r.Notes {
		line(&b, "Note: %s", n)
	}
	if len(r.Findings) == 0 {
		line(&b, "No Pod fails to pull an image (%s, %d Pods checked).", r.Scope, r.PodsChecked)
		_, err := io.WriteString(w, b.String())
		return err
	}
	line(&b, "%d of %d Pods fail to pull (%s): %d %s.", r.PodsFailing, r.PodsChecked, r.Scope, len(r.Findings), plural(len(r.Findings), "image", "images"))
	for _, f := range r.Findings {
		b.WriteString("\n")
		pod := f.Namespace + "/" + f.Pod
		if f.Workload != "" {
			pod += " (" + f.Workload + ")"
		}
		waiting := ""
		if f.Waiting != "" {
			waiting = " [" + f.Waiting + "]"
		}
		line(&b, "%s %s %s: %s%s", pod, kindWord(f.Kind), f.Name, f.Image, waiting)
		line(&b, "  cause:   %s (%s): %s", f.Cause, f.Diagnosis, f.Explanation)
		if f.KubeletMessage != "" {
			line(&b, "  kubelet: %s", oneLine(f.KubeletMessage))
		}
		line(&b, "  fix:     %s", f.Fix)
		if f.Check != nil {
			for i, a := range f.Check.Attempts {
				who := a.Username + " from " + a.Source
				if a.Anonymous {
					who = "anonymous (no credential matches)"
				}
				status := string(a.Reason)
				if a.HTTPStatus != 0 {
					status += fmt.Sprintf(" (HTTP %d)", a.HTTPStatus)
				}
				line(&b, "  check #%d %s: %s", i+1, who, status)
				if a.RateLimit != nil {
					line(&b, "    rate limit: %d of %d pulls left (window %s)", a.RateLimit.Remaining, a.RateLimit.Limit, a.RateLimit.Window)
				}
			}
			if f.Check.PullWouldSucceed {
				b.WriteString("  check: a pull from here would succeed now: the node differs (network, CA trust) or the Pod needs recreating\n")
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func kindWord(kind string) string {
	switch kind {
	case "initContainer":
		return "init container"
	case "ephemeralContainer":
		return "ephemeral container"
	case "imageVolume":
		return "image volume"
	default:
		return "container"
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// line writes one line of the report, sanitized.
func line(b *strings.Builder, format string, args ...any) {
	b.WriteString(Sanitize(fmt.Sprintf(format, args...)))
	b.WriteByte('\n')
}
