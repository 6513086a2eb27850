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
	// begin starts a batch of writes that must reach the socket by
	// deadline; flush pushes the batch out and clears the deadline.
	begin(deadline time.Time)
	flush() error
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

func (t wsTransport) write(ctx context.Context, _ *entry, b []byte) error {
	return t.ws.Write(ctx, websocket.MessageText, b)
}
func (t wsTransport) begin(deadline time.Time) { t.bc.begin(deadline) }
func (t wsTransport) flush() error             { return t.bc.end() }
func (t wsTransport) close(code int, reason string) {
	_ = t.ws.Close(websocket.StatusCode(code), reason)
}
func (t wsTransport) closeNow() { _ = t.ws.CloseNow() }
