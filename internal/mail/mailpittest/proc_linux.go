//go:build linux

package mailpittest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill mailpit if the test binary dies
// without running its cleanups (e.g. killed by a test timeout).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
