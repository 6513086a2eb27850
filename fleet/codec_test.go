package fleet

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

func TestBatchRoundTrip(t *testing.T) {
	rt := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	changes := []wire.Change{
		{Kind: wire.KindAdded, ID: "a", Path: "tasks/a", Data: json.RawMessage(`{"n":1,"f":1.5,"big":12345678901234,"s":"x","l":[1,{"m":2}]}`), UpdateTime: "2026-01-02T03:04:05.000000007Z"},
		{Kind: wire.KindModified, ID: "b", Path: "tasks/b", UpdateTime: "2026-01-02T03:04:05Z"},
		{Kind: wire.KindRemoved, ID: "c", Path: "tasks/c"},
	}
	data := encodeBatch("ep", 7, rt, rt, changes)
	b, snap, err := decodeBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	if b.Epoch != "ep" || snap.Seq != 7 || !snap.ReadTime.Equal(rt) || len(snap.Changes) != 3 {
		t.Fatalf("decoded %+v %+v", b, snap)
	}
	d := snap.Changes[0].Doc.Data
	if d["n"] != int64(1) || d["f"] != 1.5 || d["big"] != int64(12345678901234) || d["l"].([]any)[1].(map[string]any)["m"] != int64(2) {
		t.Errorf("numbers not plain: %#v", d)
	}
	// Re-encoding the decoded data gives the owner's bytes back.
	re, _ := json.Marshal(d)
	if string(re) != `{"big":12345678901234,"f":1.5,"l":[1,{"m":2}],"n":1,"s":"x"}` {
		t.Errorf("re-encoded %s", re)
	}
	if snap.Changes[1].Kind != subscriptions.Modified || len(snap.Changes[1].Doc.Data) != 0 {
		t.Errorf("modified with empty data: %+v", snap.Changes[1])
	}
	if snap.Changes[2].Kind != subscriptions.Removed || snap.Changes[2].Doc.Data != nil {
		t.Errorf("removed: %+v", snap.Changes[2])
	}
}

func TestDecodeBatchRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"not json", `{`, "batch"},
		{"no epoch", `{"s":1,"c":[{"k":"removed","id":"a","p":"t/a"}]}`, "epoch"},
		{"no seq", `{"e":"x","c":[{"k":"removed","id":"a","p":"t/a"}]}`, "seq"},
		{"no changes", `{"e":"x","s":1,"c":[]}`, "0 changes"},
		{"bad kind", `{"e":"x","s":1,"c":[{"k":"moved","id":"a","p":"t/a"}]}`, "kind"},
		{"no id", `{"e":"x","s":1,"c":[{"k":"removed","p":"t/a"}]}`, "id"},
		{"bad time", `{"e":"x","s":1,"c":[{"k":"removed","id":"a","p":"t/a","u":"yesterday"}]}`, "update time"},
		{"bad read time", `{"e":"x","s":1,"t":"x","c":[{"k":"removed","id":"a","p":"t/a"}]}`, "read time"},
		{"data not an object", `{"e":"x","s":1,"c":[{"k":"added","id":"a","p":"t/a","d":[1]}]}`, "data"},
		{"huge number", `{"e":"x","s":1,"c":[{"k":"added","id":"a","p":"t/a","d":{"n":1e999}}]}`, "number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeBatch([]byte(tc.in))
			if !errors.Is(err, errBadMessage) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decodeBatch: %v, want errBadMessage mentioning %q", err, tc.want)
			}
		})
	}
}

func TestStateRoundTrip(t *testing.T) {
	at := time.Unix(100, 5)
	st := subscriptions.FeedState{
		Seq:  9,
		Docs: []wire.Doc{{ID: "a", Path: "tasks/a", Data: json.RawMessage(`{"n":1}`), UpdateTime: "2026-01-02T03:04:05Z"}, {ID: "b", Path: "tasks/b"}},
		History: []subscriptions.HistoryEntry{
			{Seq: 8, At: at, Changes: []subscriptions.HistoryChange{{Kind: subscriptions.Added, ID: "a", Path: "tasks/a"}}},
			{Seq: 9, At: at, Changes: []subscriptions.HistoryChange{{Kind: subscriptions.Removed, ID: "c", Path: "tasks/c"}}},
		},
	}
	ep, snap, err := decodeState(encodeState("ep", st))
	if err != nil {
		t.Fatal(err)
	}
	if ep != "ep" || !snap.Reset || snap.Seq != 9 || len(snap.Docs) != 2 || len(snap.History) != 2 {
		t.Fatalf("decoded %s %+v", ep, snap)
	}
	if snap.History[1].Changes[0].Kind != subscriptions.Removed || !snap.History[0].At.Equal(at) {
		t.Errorf("history %+v", snap.History)
	}
	if _, _, err := decodeState(encodeStateError("no state yet")); !errors.Is(err, errNoState) {
		t.Errorf("error reply: %v, want errNoState", err)
	}
	for _, bad := range []string{`{"e":"x","s":1,"h":[{"s":2}]}`, `{"e":"x","s":3,"h":[{"s":2},{"s":2}]}`, `{"s":1}`, `[`} {
		if _, _, err := decodeState([]byte(bad)); !errors.Is(err, errBadMessage) {
			t.Errorf("decodeState(%s): %v, want errBadMessage", bad, err)
		}
	}
}

// FuzzDecodeBatch: any input is refused with errBadMessage or decodes into
// a batch whose changes all have an id, a path and a known kind.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch("ep", 1, time.Time{}, time.Unix(1, 0), []wire.Change{{Kind: wire.KindAdded, ID: "a", Path: "t/a", Data: json.RawMessage(`{"x":[1,2.5,"s",null,true]}`)}}))
	f.Add([]byte(`{"e":"x","s":1,"c":[{"k":"removed","id":"a","p":"t/a"}]}`))
	f.Add([]byte(`{"e":"x","s":1,"c":[{"k":"added","id":"a","p":"t/a","d":{"n":1e999}}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, snap, err := decodeBatch(data)
		if err != nil {
			if !errors.Is(err, errBadMessage) {
				t.Fatalf("error %v is not errBadMessage", err)
			}
			return
		}
		if b.Seq == 0 || b.Epoch == "" || snap.Seq != b.Seq || len(snap.Changes) == 0 {
			t.Fatalf("accepted %+v", b)
		}
		for _, c := range snap.Changes {
			if c.Doc.ID == "" || c.Doc.Path == "" || c.Kind < subscriptions.Added || c.Kind > subscriptions.Removed {
				t.Fatalf("accepted change %+v", c)
			}
		}
	})
}

// FuzzDecodeState: any input is refused or decodes into a Reset snapshot
// whose history is in seq order and not past its seq.
func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState("ep", subscriptions.FeedState{Seq: 2, Docs: []wire.Doc{{ID: "a", Path: "t/a", Data: json.RawMessage(`{}`)}},
		History: []subscriptions.HistoryEntry{{Seq: 2, Changes: []subscriptions.HistoryChange{{Kind: subscriptions.Modified, ID: "a", Path: "t/a"}}}}}))
	f.Add(encodeStateError("x"))
	f.Add([]byte(`{"e":"x","s":3,"h":[{"s":2},{"s":2}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ep, snap, err := decodeState(data)
		if err != nil {
			if !errors.Is(err, errBadMessage) && !errors.Is(err, errNoState) {
				t.Fatalf("error %v is neither errBadMessage nor errNoState", err)
			}
			return
		}
		if ep == "" || !snap.Reset {
			t.Fatalf("accepted %q %+v", ep, snap)
		}
		last := uint64(0)
		for _, h := range snap.History {
			if h.Seq <= last || h.Seq > snap.Seq {
				t.Fatalf("history out of order: %+v", snap.History)
			}
			last = h.Seq
		}
	})
}
