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

// waitReadable waits until sc has something to read, an end or an error,
// or its read deadline passes (the error), and reads nothing. It is the wait of a
// goroutine a session's wait was handed off to (see session.park), in as
// few frames as a wait can be: rc.Read calls f, and calls it again each
// time the poller says the socket is readable; a peek tells whether it
// is (a readiness seen before rc.Read began is not reported again).
func waitReadable(sc syscall.Conn) error {
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil // the read that follows waits
	}
	var buf [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return rerr != syscall.EAGAIN && rerr != syscall.EWOULDBLOCK
	})
}
