package gateway

import (
	"context"
	"time"

	"github.com/coder/websocket"
)

// transport is how the writer goroutine puts frames on the wire; only that
// goroutine calls write, flush and close (closeNow may also come from the
// connection's cleanup after the writer has stopped).
type transport interface {
	// write sends one message; e says what it is (for SSE event ids).
	write(ctx context.Context, e *entry, b []byte) error
	// begin starts a batch of writes that must reach the socket within
	// timeout; flush pushes the batch out; idle says the writer parks (no
	// deadline may outlive it).
	begin(timeout time.Duration)
	flush() error
	idle()
	// close ends the connection with a close code and reason.
	close(code int, reason string)
	closeNow()
}

// wsTransport writes WebSocket frames through coder/websocket into a
// batchConn, so one writer pass is one socket write.
type wsTransport struct {
	ws *websocket.Conn
	bc *batchConn
}

// write hands one frame to coder/websocket, which writes it into the
// batch buffer: it never blocks on the network (the flush does, under the
// socket deadline), so it needs no cancellable context — and a context
// with a Done channel would cost a context.AfterFunc per frame.
func (t wsTransport) write(_ context.Context, _ *entry, b []byte) error {
	return t.ws.Write(context.Background(), websocket.MessageText, b)
}
func (t wsTransport) begin(timeout time.Duration) { t.bc.begin(timeout) }
func (t wsTransport) flush() error                { return t.bc.end() }
func (t wsTransport) idle()                       { t.bc.clearDeadline() }
func (t wsTransport) close(code int, reason string) {
	_ = t.ws.Close(websocket.StatusCode(code), reason)
}
func (t wsTransport) closeNow() { _ = t.ws.CloseNow() }
