package gateway

import (
	"os"
	"strings"
	"testing"
)

// TestHoldReadErrorIsTemporary: a held message that cannot be read back
// from its temp file (a disk error) is a local failure: the sender gets a
// 4xx and keeps the message, never a 5xx that makes it bounce.
func TestHoldReadErrorIsTemporary(t *testing.T) {
	old := createTemp
	t.Cleanup(func() { createTemp = old })
	createTemp = func(dir, pattern string) (*os.File, error) {
		f, err := os.CreateTemp(dir, pattern)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return os.OpenFile(f.Name(), os.O_WRONLY, 0) // writes work, reads fail
	}
	m := startMTA(t)
	cfg := testConfig()
	cfg.MemoryThreshold = 1024
	g := startGateway(t, cfg, m, nil)
	msg := simpleMsg + strings.Repeat("a line of the body, past the memory threshold\r\n", 64)
	err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, msg)
	if code := codeOf(err); code/100 != 4 {
		t.Fatalf("held message unreadable: sender got %d (%v), want a 4xx", code, err)
	}
	if n := len(m.messages()); n != 0 {
		t.Fatalf("MTA holds %d messages", n)
	}
}
