//go:build unix

package cloud

import (
	"os/exec"
	"syscall"
	"time"
)

// ownGroup starts the plugin in a process group of its own (its PID is the
// group's ID), so that killGroup reaches whatever it starts.
func ownGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }

// reapGroup collects the group's processes that became the manager's
// children (it is PID 1 in its container, so orphans are handed to it) and
// would stay zombies: Go reaps only the children it started.
func reapGroup(pgid int) {
	// They were sent SIGKILL: a second is far more than they need.
	for tries := 0; tries < 100; tries++ {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-pgid, &ws, syscall.WNOHANG, nil)
		switch {
		case err != nil: // ECHILD: none of them is ours
			return
		case pid == 0: // ours, still dying
			time.Sleep(10 * time.Millisecond)
		}
	}
}
