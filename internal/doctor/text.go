package doctor

import (
	"fmt"
	"io"
	"strings"
)

// WriteText prints the report for a person: a summary, then for each
// failing image its cause in one line and the fix as a command.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "Note: %s\n", n)
	}
	if len(r.Findings) == 0 {
		fmt.Fprintf(&b, "No Pod fails to pull an image (%s, %d Pods checked).\n", r.Scope, r.PodsChecked)
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "%d of %d Pods fail to pull (%s): %d %s.\n", r.PodsFailing, r.PodsChecked, r.Scope, len(r.Findings), plural(len(r.Findings), "image", "images"))
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
		fmt.Fprintf(&b, "%s %s %s: %s%s\n", pod, kindWord(f.Kind), f.Name, f.Image, waiting)
		fmt.Fprintf(&b, "  cause:   %s (%s): %s\n", f.Cause, f.Diagnosis, f.Explanation)
		if f.KubeletMessage != "" {
			fmt.Fprintf(&b, "  kubelet: %s\n", oneLine(f.KubeletMessage))
		}
		fmt.Fprintf(&b, "  fix:     %s\n", f.Fix)
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
				fmt.Fprintf(&b, "  check #%d %s: %s\n", i+1, who, status)
				if a.RateLimit != nil {
					fmt.Fprintf(&b, "    rate limit: %d of %d pulls left (window %s)\n", a.RateLimit.Remaining, a.RateLimit.Limit, a.RateLimit.Window)
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
