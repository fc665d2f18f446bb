//go:build !unix

package cloud

import (
	"os"
	"os/exec"
)

// The manager runs on Linux; elsewhere (the CLI's Windows build) a plugin
// is only killed itself, not what it started.

func ownGroup(*exec.Cmd) {}

func killGroup(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

func reapGroup(int) {}
