package gateway

import (
	"context"

	"github.com/coder/websocket"
)

// transport is how the writer goroutine puts frames on the wire; only that
// goroutine calls write, flush and close (closeNow may also come from the
// connection's cleanup after the writer has stopped).
type transport interface {
	// write sends one message; e says what it is (for SSE event ids).
	write(ctx context.Context, e *entry, b []byte) error
	// begin starts a batch of writes; flush pushes the batch out, within
	// ctx's deadline.
	begin()
	flush(ctx context.Context) error
	// close ends the connection with a close code and reason.
	close(code int, reason string)
	closeNow()
}

type wsTransport struct {
	ws *websocket.Conn
	bc *batchConn // nil: unbatched
}

func (t wsTransport) write(ctx context.Context, _ *entry, b []byte) error {
	return t.ws.Write(ctx, websocket.MessageText, b)
}
func (t wsTransport) begin() {
	if t.bc != nil {
		t.bc.begin()
	}
}

func (t wsTransport) flush(ctx context.Context) error {
	if t.bc == nil {
		return nil
	}
	dl, _ := ctx.Deadline()
	return t.bc.end(dl)
}
func (t wsTransport) close(code int, reason string) {
	_ = t.ws.Close(websocket.StatusCode(code), reason)
}
func (t wsTransport) closeNow() { _ = t.ws.CloseNow() }
