//go:build !unix

package gateway

import "syscall"

// idleClean cannot peek here; pooled connections are trusted, as the
// first command on a stale one fails and is retried.
func idleClean(syscall.Conn) bool { return true }

// waitReadable returns at once here: the read that follows waits.
func waitReadable(syscall.Conn) error { return nil }
