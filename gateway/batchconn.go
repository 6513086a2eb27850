package gateway

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// maxBatchBytes bounds what one batched write gathers before it goes out.
const maxBatchBytes = 256 << 10

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// batchConn lets the writer goroutine put several WebSocket frames on the
// wire with one write: between begin and end, what the WebSocket library
// flushes is gathered in a pooled buffer, and end writes it at once. Outside
// a batch (and for control frames the library writes from the read side,
// such as pongs) writes go straight through. mu guards batching and buf.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	deadline time.Time // the socket's write deadline; zero: none
	buf      *[]byte
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching {
		if len(*b.buf)+len(p) <= maxBatchBytes {
			*b.buf = append(*b.buf, p...)
			return len(p), nil
		}
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
	}
	return b.Conn.Write(p)
}

// begin starts gathering; what it gathers must reach the socket within
// timeout. The socket deadline is moved only when less than half of
// timeout is left (not on every pass), and cleared by clearDeadline when
// the writer parks.
func (b *batchConn) begin(timeout time.Duration) {
	b.mu.Lock()
	if now := time.Now(); b.deadline.IsZero() || b.deadline.Sub(now) < timeout/2 {
		b.deadline = now.Add(timeout)
		_ = b.Conn.SetWriteDeadline(b.deadline)
	}
	b.batching = true
	if b.buf == nil {
		b.buf = batchBufs.Get().(*[]byte)
	}
	b.mu.Unlock()
}

// end writes what the batch gathered and returns the buffer to the pool.
func (b *batchConn) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	if b.buf == nil {
		return nil
	}
	err := b.flushLocked()
	if cap(*b.buf) <= maxBatchBytes*2 {
		*b.buf = (*b.buf)[:0]
		batchBufs.Put(b.buf)
	}
	b.buf = nil
	return err
}

// clearDeadline removes the socket write deadline (the writer parks; the
// library's own control writes, such as pongs, must not inherit it).
func (b *batchConn) clearDeadline() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.deadline.IsZero() {
		_ = b.Conn.SetWriteDeadline(time.Time{})
		b.deadline = time.Time{}
	}
}

func (b *batchConn) flushLocked() error {
	if len(*b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(*b.buf)
	*b.buf = (*b.buf)[:0]
	return err
}

// batchingWriter hands the WebSocket library a batchConn when it hijacks
// the connection.
type batchingWriter struct {
	http.ResponseWriter
	bc *batchConn
}

func (w *batchingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer cannot hijack")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.bc = &batchConn{Conn: conn}
	// net/http has just reset its writer onto the raw connection (nothing
	// is buffered); point it at the batching wrapper instead.
	brw.Writer.Reset(w.bc)
	return w.bc, brw, nil
}
