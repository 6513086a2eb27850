package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeClient(t *testing.T) {
	long := strings.Repeat("x", MaxIDLength)
	cases := []struct {
		in      string
		wantErr string
		check   func(t *testing.T, m ClientMessage)
	}{
		{in: `{"type":"ping","id":"p1"}`, check: func(t *testing.T, m ClientMessage) {
			if m.Type != "ping" || m.ID != "p1" {
				t.Fatalf("%+v", m)
			}
		}},
		{in: `{"type":"auth","token":"abc"}`},
		{in: `{"type":"auth"}`, wantErr: "needs a token"},
		{in: `{"type":"subscribe","id":"s","collection":"tasks","where":[{"field":"n","op":"in","value":[1,2.5,"x",null,true]}],"order_by":[{"field":"n","direction":"desc"}],"limit":10,"resume":{"epoch":"e","seq":4}}`,
			check: func(t *testing.T, m ClientMessage) {
				v := m.Where[0].Value.([]any)
				if _, ok := v[0].(int64); !ok {
					t.Fatalf("integral number decoded as %T", v[0])
				}
				if _, ok := v[1].(float64); !ok {
					t.Fatalf("fraction decoded as %T", v[1])
				}
				if m.Resume.Seq != 4 || m.Limit != 10 || m.OrderBy[0].Direction != "desc" {
					t.Fatalf("%+v", m)
				}
			}},
		{in: `{"type":"subscribe","collection":"tasks"}`, wantErr: "needs an id"},
		{in: `{"type":"subscribe","id":"s"}`, wantErr: "needs a collection or a doc"},
		{in: `{"type":"subscribe","id":"d","doc":"tasks/t1","resume":{"epoch":"e","seq":2}}`, check: func(t *testing.T, m ClientMessage) {
			if m.Doc != "tasks/t1" || m.Collection != "" || m.Resume.Seq != 2 {
				t.Fatalf("%+v", m)
			}
		}},
		{in: `{"type":"subscribe","id":"d","doc":"projects/p1/tasks/t9"}`},
		{in: `{"type":"subscribe","id":"d","doc":"tasks/t1","collection":"tasks"}`, wantErr: "not both"},
		{in: `{"type":"subscribe","id":"d","doc":"tasks"}`, wantErr: "even number"},
		{in: `{"type":"subscribe","id":"d","doc":"tasks/t1/notes"}`, wantErr: "even number"},
		{in: `{"type":"subscribe","id":"d","doc":"/tasks/t1"}`, wantErr: "start or end"},
		{in: `{"type":"subscribe","id":"d","doc":"tasks//t1/x"}`, wantErr: "empty segment"},
		{in: `{"type":"subscribe","id":"d","doc":"tasks/` + strings.Repeat("t", MaxDocPathBytes) + `"}`, wantErr: "longer than"},
		{in: `{"type":"subscribe","id":"d","doc":"tasks/t1","limit":1}`, wantErr: "no where, order_by or limit"},
		{in: `{"type":"subscribe","id":"d","doc":"tasks/t1","where":[{"field":"a","op":"==","value":1}]}`, wantErr: "no where, order_by or limit"},
		{in: `{"type":"subscribe","id":"d","doc":"tasks/t1","order_by":[{"field":"a"}]}`, wantErr: "no where, order_by or limit"},
		{in: `{"type":"subscribe","id":"s","collection":"t","where":[{"op":"=="}]}`, wantErr: "missing field"},
		{in: `{"type":"subscribe","id":"s","collection":"t","where":[{"field":"a","op":"like"}]}`, wantErr: "unknown op"},
		{in: `{"type":"subscribe","id":"s","collection":"t","where":[{"field":"a","op":"==","value":{"x":1}}]}`, wantErr: "objects"},
		{in: `{"type":"subscribe","id":"s","collection":"t","where":[{"field":"a","op":"==","value":1e999}]}`, wantErr: "out of range"},
		{in: `{"type":"subscribe","id":"s","collection":"t","order_by":[{"field":"a","direction":"up"}]}`, wantErr: "asc or desc"},
		{in: `{"type":"subscribe","id":"s","collection":"t","limit":-1}`, wantErr: "negative"},
		{in: `{"type":"subscribe","id":"s","collection":"t","resume":{"seq":1}}`, wantErr: "epoch"},
		{in: `{"type":"unsubscribe"}`, wantErr: "needs an id"},
		{in: `{"type":"ping","id":"` + long + `"}`},
		{in: `{"type":"ping","id":"` + long + `x"}`, wantErr: "longer than"},
		{in: `{"type":"warp"}`, wantErr: "unknown type"},
		{in: `{}`, wantErr: "missing type"},
		{in: `[]`, wantErr: "one JSON object"},
		{in: ``, wantErr: "one JSON object"},
		{in: `{"type":"ping"} {"type":"ping"}`, wantErr: "trailing"},
		{in: `{"type":"ping"`, wantErr: "invalid JSON"},
		{in: `{"type":"subscribe","id":"s","collection":"t","limit":"x"}`, wantErr: "must be"},
		{in: "{\"type\":\"ping\",\"id\":\"\xff\"}", wantErr: "UTF-8"},
		{in: `{"type":"ping","future_field":1}`},
	}
	for _, tc := range cases {
		m, err := DecodeClient([]byte(tc.in))
		if tc.wantErr != "" {
			var de *DecodeError
			if err == nil || !errors.As(err, &de) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if tc.check != nil {
			tc.check(t, m)
		}
	}
}

func TestFramesAreValidJSON(t *testing.T) {
	rt := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	quoted := QuoteID("s\"1")
	frames := []*Frame{
		ChangesFrame(7, rt, []Change{{Kind: KindAdded, ID: "a", Path: "t/a", Data: []byte(`{"x":1}`), UpdateTime: "u"}, {Kind: KindRemoved, ID: "b", Path: "t/b", Data: []byte(`{"ignored":1}`)}}),
		ChangesFrame(8, time.Time{}, nil),
		SnapshotFrame(3, []Doc{{ID: "a", Path: "t/a", Data: []byte(`{"y":[1]}`), UpdateTime: "u"}}, true),
		SnapshotFrame(3, nil, false),
		UnsubscribedFrame(ReasonUpstreamError, "index needed: https://console/…"),
		SubscribedFrame("ep", true),
	}
	for _, f := range frames {
		b := f.AppendTo(nil, quoted)
		var m ServerMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if m.Type != f.Type || (m.Sub != "s\"1" && m.ID != "s\"1") {
			t.Fatalf("%s decoded as %+v", b, m)
		}
		if len(b) != f.Len(len(quoted)) {
			t.Fatalf("Len %d, frame %d", f.Len(len(quoted)), len(b))
		}
	}
	removed := string(frames[0].AppendTo(nil, quoted))
	if strings.Contains(removed, "ignored") {
		t.Fatalf("removed change carries data: %s", removed)
	}
	if !frames[2].FinalChunk() || frames[3].FinalChunk() || !frames[0].FinalChunk() {
		t.Fatal("FinalChunk")
	}
}

func FuzzDecodeClient(f *testing.F) {
	for _, s := range []string{
		`{"type":"ping","id":"p"}`, `{"type":"auth","token":"t"}`,
		`{"type":"subscribe","id":"s","collection":"tasks","where":[{"field":"a","op":"in","value":[1,"x"]}],"limit":3}`,
		`{"type":"unsubscribe","id":"s"}`, `{"type":"subscribe","id":"s","collection":"c","resume":{"epoch":"e","seq":1}}`,
		`{"type":"subscribe","id":"d","doc":"tasks/t1"}`, `{"type":"subscribe","id":"d","doc":"a/b/c/d","resume":{"epoch":"e","seq":1}}`,
		`[`, `{"type":1}`, "{\"type\":\"ping\",\"id\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeClient(b)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Msg == "" {
				t.Fatalf("error %v is not a DecodeError with a message", err)
			}
			return
		}
		// What decodes is well formed: a known type, a bounded id, known ops.
		switch m.Type {
		case TypeAuth, TypeSubscribe, TypeUnsubscribe, TypePing:
		default:
			t.Fatalf("accepted type %q", m.Type)
		}
		if len(m.ID) > MaxIDLength {
			t.Fatalf("id of %d bytes", len(m.ID))
		}
		for _, w := range m.Where {
			if !validOp(w.Op) || w.Field == "" {
				t.Fatalf("accepted filter %+v", w)
			}
		}
		// A doc subscription names a document and nothing of a query.
		if m.Type == TypeSubscribe && m.Doc != "" {
			c, id, err := SplitDocPath(m.Doc)
			if err != nil || c == "" || id == "" || m.Collection != "" || len(m.Where) > 0 || len(m.OrderBy) > 0 || m.Limit != 0 {
				t.Fatalf("accepted doc subscription %+v (%q, %q, %v)", m, c, id, err)
			}
		}
	})
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"uote\\", "\n\t\x00\x1f", "\u2028\u2029", "\xff\xfe", "héllo ✓"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, b, err)
		}
		// encoding/json is the reference: it too replaces invalid UTF-8.
		var want string
		rb, _ := json.Marshal(s)
		_ = json.Unmarshal(rb, &want)
		if got != want {
			t.Fatalf("%q round-tripped to %q, want %q", s, got, want)
		}
		if bytes.ContainsAny(b[1:len(b)-1], "\n\r") {
			t.Fatalf("raw newline in %s", b)
		}
	})
}
