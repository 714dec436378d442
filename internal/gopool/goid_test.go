package gopool

import (
	"bytes"
	"runtime"
	"strconv"
)

// goid returns the current goroutine's id, from its stack trace header
// ("goroutine 17 [running]:"); for tests only.
func goid() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseInt(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}
