package redistest

import "syscall"

// sysProcAttr asks the kernel to kill the server if the test process dies
// without cleaning up, so no redis-server outlives a crashed test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
