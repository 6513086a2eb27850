package wire_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/firegate/firegate/wire"
)

// BenchmarkDecodeClient decodes the client frames a gateway sees most.
func BenchmarkDecodeClient(b *testing.B) {
	frames := []struct{ name, frame string }{
		{"ping", `{"type":"ping","id":"p1"}`},
		{"subscribe", `{"type":"subscribe","id":"s1","collection":"tasks","where":[{"field":"status","op":"==","value":"open"},{"field":"n","op":">=","value":3}],"order_by":[{"field":"created_at","direction":"desc"}],"limit":100}`},
		{"resume", `{"type":"subscribe","id":"s1","collection":"tasks","resume":{"epoch":"e1","seq":42}}`},
		{"auth", `{"type":"auth","token":"` + strings.Repeat("a", 800) + `"}`},
	}
	for _, f := range frames {
		b.Run(f.name, func(b *testing.B) {
			raw := []byte(f.frame)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := wire.DecodeClient(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSplice measures what the per-subscriber path does with a
// change encoded once: splice the subscription id into a reused buffer.
// It must not allocate.
func BenchmarkSplice(b *testing.B) {
	data, _ := json.Marshal(map[string]any{"org_id": "org_acme", "title": "write the benchmarks", "status": "open", "n": 3, "pad": strings.Repeat("x", 80)})
	f := wire.ChangesFrame(42, time.Unix(1700000000, 123), []wire.Change{{Kind: wire.KindModified, ID: "t1", Path: "tasks/t1", Data: data, UpdateTime: "2026-01-01T00:00:00.123456Z"}})
	sub := wire.QuoteID("sub-1234")
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(f.Len(len(sub))))
	b.ReportAllocs()
	for b.Loop() {
		buf = f.AppendTo(buf[:0], sub)
	}
	if len(buf) != f.Len(len(sub)) {
		b.Fatalf("spliced %d bytes, want %d", len(buf), f.Len(len(sub)))
	}
}

// BenchmarkChangesFrame measures encoding one change once per Feed.
func BenchmarkChangesFrame(b *testing.B) {
	data, _ := json.Marshal(map[string]any{"org_id": "org_acme", "title": "write the benchmarks", "status": "open", "n": 3})
	cs := []wire.Change{{Kind: wire.KindModified, ID: "t1", Path: "tasks/t1", Data: data, UpdateTime: "2026-01-01T00:00:00.123456Z"}}
	now := time.Unix(1700000000, 123)
	b.ReportAllocs()
	for b.Loop() {
		_ = wire.ChangesFrame(42, now, cs)
	}
}

func TestSpliceDoesNotAllocate(t *testing.T) {
	f := wire.ChangesFrame(1, time.Time{}, []wire.Change{{Kind: wire.KindRemoved, ID: "t1", Path: "tasks/t1"}})
	sub := wire.QuoteID("s1")
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(1000, func() { buf = f.AppendTo(buf[:0], sub) }); n != 0 {
		t.Fatalf("splice allocates %v times", n)
	}
}
