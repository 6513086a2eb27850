package testkit

import (
	"bytes"
	"sync"
)

// LockedBuffer is a bytes.Buffer that a child process (as its Stdout or
// Stderr) writes while the test reads it. It is safe for concurrent use;
// the zero value is empty and ready.
type LockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
