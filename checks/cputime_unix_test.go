//go:build unix

package checks

import "syscall"

// processCPU returns the CPU time (user and system) the process has used,
// in nanoseconds, garbage collection included; ok is false where unknown.
func processCPU() (ns int64, ok bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), true
}
