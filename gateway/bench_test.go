package gateway

import (
	"net"
	"testing"
	"time"

	"github.com/firegate/firegate/metrics"
)

type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) Close() error                     { return nil }

// BenchmarkDeliverAndWrite is one subscriber's share of a fan-out after
// the Feed: push the shared frame into the connection's queue, take it,
// splice the subscription id in and write it through the batching
// connection (WebSocket framing by the library and the socket write
// itself are left out).
func BenchmarkDeliverAndWrite(b *testing.B) {
	q := newSendQueue(512, 4<<20, func(metrics.OverflowAction) {})
	s := newTestSub(q, "s1")
	m := liveMsg(1)
	bc := &batchConn{Conn: discardConn{}}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		q.pushMsg(s, m, false)
		batch, _, _, _ := q.take()
		bc.begin(time.Second)
		for i := range batch {
			buf = batch[i].msg.Frame.AppendTo(buf[:0], batch[i].sub.quoted)
			_, _ = bc.Write(buf)
		}
		_ = bc.end()
		q.release(batch)
	}
}
