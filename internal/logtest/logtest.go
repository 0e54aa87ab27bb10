// Package logtest holds a log for tests: the code under test writes it,
// the test reads it while that code runs.
package logtest

import (
	"strings"
	"sync"
)

// Buffer is a log that may be read while it is written.
type Buffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
