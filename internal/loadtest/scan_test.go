package loadtest

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firegate/firegate/wire"
)

func TestFrameType(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`{"type":"changes","sub":"s1"}`, wire.TypeChanges},
		{`{"type":"snapshot","sub":"s1"}`, wire.TypeSnapshot},
		{`{"type":"subscribed","id":"s1"}`, wire.TypeSubscribed},
		{`{"type":"welcome","user_id":"u"}`, wire.TypeWelcome},
		{`{"type":"unsubscribed"}`, wire.TypeUnsubscribed},
		{`{"type":"error","code":"x"}`, wire.TypeError},
		{`{"type":"auth_expiring"}`, wire.TypeAuthExpiring},
		{`{"type":"pong"}`, wire.TypePong},
		{`{"type":"nope"}`, ""},
		{`{"type":"changes`, ""},
		{` {"type":"changes"}`, ""},
		{`{"sub":"s1","type":"changes"}`, ""},
		{``, ""},
	}
	for _, tc := range tests {
		if got := frameType([]byte(tc.in)); got != tc.want {
			t.Errorf("frameType(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAppendMarks(t *testing.T) {
	maxI := strconv.FormatInt(math.MaxInt64, 10)
	tests := []struct {
		name string
		in   string
		want []mark
	}{
		{"one", `{"ltm":"3:1700000000000000000"}`, []mark{{3, 1700000000000000000}}},
		{"two", `[{"ltm":"0:5"},{"x":1,"ltm":"10:6"}]`, []mark{{0, 5}, {10, 6}}},
		{"none", `{"type":"changes","changes":[]}`, nil},
		{"int64 max", `{"ltm":"` + maxI + `:` + maxI + `"}`, []mark{{math.MaxInt64, math.MaxInt64}}},
		{"past int64 max", `{"ltm":"9223372036854775808:1"}`, nil},
		{"missing colon", `{"ltm":"12"}`, nil},
		{"missing digits", `{"ltm":":12"}`, nil},
		{"unterminated", `{"ltm":"1:2`, nil},
		{"letters", `{"ltm":"1:2x"}`, nil},
		{"negative", `{"ltm":"-1:2"}`, nil},
		{"bad then good", `{"ltm":"x"},{"ltm":"4:4"}`, []mark{{4, 4}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := appendMarks(nil, []byte(tc.in))
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestFrameSeqAndFinal(t *testing.T) {
	f := wire.SnapshotFrame(42, nil, true).AppendTo(nil, quotedS1)
	if seq, ok := frameSeq(f); !ok || seq != 42 {
		t.Fatalf("frameSeq = %d, %v", seq, ok)
	}
	if !finalChunk(f) {
		t.Fatal("final snapshot not recognized")
	}
	if finalChunk(wire.SnapshotFrame(42, nil, false).AppendTo(nil, quotedS1)) {
		t.Fatal("non-final chunk taken for final")
	}
	if _, ok := frameSeq([]byte(`{"type":"pong"}`)); ok {
		t.Fatal("seq found in a frame without one")
	}
	if _, ok := frameSeq([]byte(`{"seq":99999999999999999999999}`)); ok {
		t.Fatal("overflowing seq accepted")
	}
}

// changesFrame builds a frame as the gateway would for these marks.
func changesFrame(marks []mark, pad string) []byte {
	var cs []wire.Change
	for i, m := range marks {
		data, _ := json.Marshal(docData("org_x", m.W, m.SentNS, pad))
		cs = append(cs, wire.Change{Kind: wire.KindModified, ID: "d" + strconv.Itoa(i), Path: "tasks/d" + strconv.Itoa(i), Data: data, UpdateTime: "2026-01-01T00:00:00Z"})
	}
	cs = append(cs, wire.Change{Kind: wire.KindRemoved, ID: "gone", Path: "tasks/gone"})
	return wire.ChangesFrame(7, time.Unix(0, 1), cs).AppendTo(nil, quotedS1)
}

func TestMarksOfGatewayFrames(t *testing.T) {
	marks := []mark{{0, time.Now().UnixNano()}, {123456789, 1}, {math.MaxInt64, math.MaxInt64}}
	b := changesFrame(marks, `pad with "quotes" and \ backslashes`)
	if frameType(b) != wire.TypeChanges {
		t.Fatalf("type %q", frameType(b))
	}
	got := appendMarks(nil, b)
	if len(got) != len(marks) {
		t.Fatalf("got %v, want %v", got, marks)
	}
	for i := range marks {
		if got[i] != marks[i] {
			t.Fatalf("got %v, want %v", got, marks)
		}
	}
	if seq, ok := frameSeq(b); !ok || seq != 7 {
		t.Fatalf("seq %d %v", seq, ok)
	}
}

func TestScanDoesNotAllocate(t *testing.T) {
	b := changesFrame([]mark{{1, 2}, {3, 4}}, "xx")
	dst := make([]mark, 0, 8)
	n := testing.AllocsPerRun(1000, func() {
		_ = frameType(b)
		dst = appendMarks(dst[:0], b)
		_, _ = frameSeq(b)
	})
	if n != 0 {
		t.Fatalf("scanning allocates %v times", n)
	}
}

func TestPadForHitsPayload(t *testing.T) {
	// Fixed times: one with nine nanosecond digits (the longest form, as
	// padFor assumes) and one on a whole second (RFC 3339 drops the
	// fraction), so the sizes do not depend on the wall clock.
	long := time.Date(2026, 6, 7, 8, 9, 10, 987654321, time.UTC)
	short := time.Date(2026, 6, 7, 8, 9, 10, 0, time.UTC)
	for _, payload := range []int{400, 600, 2000} {
		pad := padFor("abcd1234", payload)
		b := broadcastFrame("abcd1234", 3, 12345, 10, long, padString(pad))
		if d := len(b) - payload; d < -8 || d > 8 {
			t.Errorf("payload %d: frame is %d bytes", payload, len(b))
		}
		// A shorter time makes a shorter frame, never a longer one.
		if b2 := broadcastFrame("abcd1234", 3, 12345, 10, short, padString(pad)); len(b2) > len(b) {
			t.Errorf("payload %d: whole-second frame %d bytes, longer than %d", payload, len(b2), len(b))
		}
	}
	if padFor("abcd1234", 10) != 0 {
		t.Error("a payload below the frame's fixed size must give no padding")
	}
}

func FuzzAppendMarks(f *testing.F) {
	f.Add([]byte(`{"ltm":"3:1700000000000000000"}`), int64(5), int64(6), "pad")
	f.Add([]byte(`{"ltm":"9223372036854775808:1"}`), int64(0), int64(0), "")
	f.Add([]byte(`"ltm":"`), int64(-1), int64(math.MaxInt64), `"ltm":"1:2"`)
	f.Fuzz(func(t *testing.T, raw []byte, w, ns int64, pad string) {
		// Arbitrary input never panics and yields only well-formed marks.
		for _, m := range appendMarks(nil, raw) {
			if m.W < 0 || m.SentNS < 0 {
				t.Fatalf("negative mark %v from %q", m, raw)
			}
		}
		_ = frameType(raw)
		_, _ = frameSeq(raw)
		_ = finalChunk(raw)
		// A frame the gateway would encode yields exactly its marks,
		// whatever the padding holds (it is JSON-escaped).
		if w < 0 || ns < 0 {
			return
		}
		b := changesFrame([]mark{{w, ns}}, pad)
		got := appendMarks(nil, b)
		if strings.Contains(pad, `"ltm":"`) {
			return // an unescaped marker cannot occur, but skip the odd case
		}
		if len(got) != 1 || got[0] != (mark{w, ns}) {
			t.Fatalf("marks %v from frame with mark {%d %d} pad %q", got, w, ns, pad)
		}
	})
}
