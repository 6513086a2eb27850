package gateway

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes []string
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, string(p))
	return len(p), nil
}
func (c *countingConn) SetWriteDeadline(time.Time) error { return nil }

func TestBatchConnGathersFramesIntoOneWrite(t *testing.T) {
	cc := &countingConn{}
	b := &batchConn{Conn: cc}
	b.Write([]byte("direct"))
	b.begin(time.Second)
	for _, f := range []string{"a", "b", "c"} {
		b.Write([]byte(f))
	}
	if len(cc.writes) != 1 {
		t.Fatalf("wrote during the batch: %q", cc.writes)
	}
	if err := b.end(); err != nil {
		t.Fatal(err)
	}
	if len(cc.writes) != 2 || cc.writes[1] != "abc" {
		t.Fatalf("writes %q", cc.writes)
	}
	// Past the batch bound the gathered bytes go out first, in order.
	b.begin(time.Second)
	b.Write([]byte("x"))
	big := strings.Repeat("y", maxBatchBytes)
	b.Write([]byte(big))
	b.end()
	if len(cc.writes) != 4 || cc.writes[2] != "x" || cc.writes[3] != big {
		t.Fatalf("%d writes", len(cc.writes))
	}
	if b.buf != nil {
		t.Fatal("idle connection keeps a batch buffer")
	}
	if b.deadline.IsZero() {
		t.Fatal("no write deadline during a batch")
	}
	b.clearDeadline()
	if !b.deadline.IsZero() {
		t.Fatal("deadline outlives the writer")
	}
}
