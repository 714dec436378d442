package gateway

import "syscall"

// syscallEMFILE is "too many open files": accept backs off and retries.
const syscallEMFILE = syscall.EMFILE
