//go:build unix

package gateway

import "syscall"

// idleClean reports whether an idle connection is still open and has
// nothing waiting to be read: one non-blocking peek (MSG_PEEK|
// MSG_DONTWAIT), no data consumed. An internal MTA that sent a reply too
// many, or that closed the connection while it idled in the pool, fails
// it: the connection must not carry the next transaction, whose replies
// would be read one behind.
func idleClean(sc syscall.Conn) bool {
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	clean := false
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		clean = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait
	})
	return err == nil && clean
}
