package baseline

import (
	"net"
	"sync"
	"testing"
	"time"
)

func TestCorkConnBatchesWrites(t *testing.T) {
	a, bconn := net.Pipe()
	defer a.Close()
	defer bconn.Close()
	c := &corkConn{Conn: a}
	got := make(chan []byte, 10)
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := bconn.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()
	c.cork()
	for _, s := range []string{"one ", "two ", "three"} {
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case b := <-got:
		t.Fatalf("corked write reached the peer: %q", b)
	case <-time.After(20 * time.Millisecond):
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "one two three" {
		t.Fatalf("peer read %q in one write, want all three", b)
	}
	// Uncorked writes pass straight through.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = c.Write([]byte("direct"))
	}()
	if b := <-got; string(b) != "direct" {
		t.Fatalf("read %q", b)
	}
	wg.Wait()
	if err := c.uncork(); err != nil {
		t.Fatal("uncork with nothing buffered:", err)
	}
	_ = a.Close()
	for range got {
	}
}
