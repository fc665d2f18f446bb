package cli

import (
	"os"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// The manager keeps the Go runtime under goMemLimitRatio of its
// container's limit, and an operator's GOMEMLIMIT or AUTOMEMLIMIT wins.
func TestGoMemLimitFollowsTheContainer(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	const limit = 192 << 20
	f := float64(limit)
	cases := []struct {
		name string
		env  map[string]string
		want int64
	}{
		{"the chart's limit", nil, int64(goMemLimitRatio * f)},
		{"AUTOMEMLIMIT ratio", map[string]string{"AUTOMEMLIMIT": "0.9"}, int64(0.9 * f)},
		{"AUTOMEMLIMIT off", map[string]string{"AUTOMEMLIMIT": "off"}, before},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "100MiB"}, before},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"GOMEMLIMIT", "AUTOMEMLIMIT"} {
				t.Setenv(k, "") // restored after the test
				if v, ok := tc.env[k]; ok {
					t.Setenv(k, v)
				} else {
					os.Unsetenv(k)
				}
			}
			debug.SetMemoryLimit(before)
			got, err := setGoMemLimit(memlimit.Limit(limit))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || debug.SetMemoryLimit(-1) != tc.want {
				t.Errorf("GOMEMLIMIT = %d (runtime %d), want %d", got, debug.SetMemoryLimit(-1), tc.want)
			}
		})
	}
}
