package subscriptions

import (
	"testing"
	"time"

	"github.com/firegate/firegate/wire"
)

// BenchmarkFanout10k processes one upstream change (one document, ~8
// fields) for a Feed with 10,000 subscribers whose Deliver appends to a
// preallocated ring: visible-set update, encoding once, replay append and
// the fan-out loop.
func BenchmarkFanout10k(b *testing.B) {
	_, rings, step := hsFanoutSetup(b, 10_000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		step()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(rings)), "ns/subscriber")
}

// BenchmarkChangeEncode is the per-change cost with a single subscriber:
// visible-set bookkeeping, data encoding (encoding/json), the changes frame
// and the replay entry.
func BenchmarkChangeEncode(b *testing.B) {
	_, _, step := hsFanoutSetup(b, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		step()
	}
}

// BenchmarkChangesFrame is the wire encoding alone for the same change.
func BenchmarkChangesFrame(b *testing.B) {
	data := []byte(`{"assignee":"user_123","done":false,"estimate":2.5,"org_id":"org_2abc","priority":3,"status":"open","tags":["finance","q3"],"title":"Write the quarterly report"}`)
	cs := []wire.Change{{Kind: wire.KindModified, ID: "t1", Path: "tasks/t1", Data: data, UpdateTime: "2025-01-02T03:04:05.000001Z"}}
	rt := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		_ = wire.ChangesFrame(1, rt, cs)
	}
}
