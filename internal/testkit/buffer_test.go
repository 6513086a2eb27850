package testkit

import (
	"strings"
	"sync"
	"testing"
)

// TestLockedBufferConcurrent writes and reads from many goroutines (go
// test -race checks the locking) and keeps every write.
func TestLockedBufferConcurrent(t *testing.T) {
	var b LockedBuffer
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if n, err := b.Write([]byte("ab")); n != 2 || err != nil {
				t.Errorf("Write = %d, %v", n, err)
			}
		}()
		go func() {
			defer wg.Done()
			_ = b.String()
		}()
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("ab", 20) {
		t.Fatalf("String() = %q, want 20 writes of ab", got)
	}
}
