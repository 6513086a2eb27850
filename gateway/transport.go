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
	// flush pushes out what write buffered (a no-op for WebSockets).
	flush() error
	// close ends the connection with a close code and reason.
	close(code int, reason string)
	closeNow()
}

type wsTransport struct{ ws *websocket.Conn }

func (t wsTransport) write(ctx context.Context, _ *entry, b []byte) error {
	return t.ws.Write(ctx, websocket.MessageText, b)
}
func (t wsTransport) flush() error { return nil }
func (t wsTransport) close(code int, reason string) {
	_ = t.ws.Close(websocket.StatusCode(code), reason)
}
func (t wsTransport) closeNow() { _ = t.ws.CloseNow() }
