package subscriptions

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/genproto/googleapis/type/latlng"
)

type fsStringer struct{}

func (fsStringer) String() string { return "custom" }

func TestToJSONValue(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 600000000, time.FixedZone("x", -5*3600))
	ref := &firestore.DocumentRef{Path: "projects/p/databases/(default)/documents/a/b/c/d", ID: "d"}
	var nilRef *firestore.DocumentRef
	var nilGeo *latlng.LatLng
	var nilTime *time.Time
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"nil", nil, nil},
		{"bool", false, false},
		{"string", "s", "s"},
		{"int64", int64(-7), int64(-7)},
		{"int64 max", int64(math.MaxInt64), int64(math.MaxInt64)},
		{"int", 3, int64(3)},
		{"int8", int8(-3), int64(-3)},
		{"int16", int16(300), int64(300)},
		{"int32", int32(-70000), int64(-70000)},
		{"uint8", uint8(255), int64(255)},
		{"uint16", uint16(65535), int64(65535)},
		{"uint32", uint32(math.MaxUint32), int64(math.MaxUint32)},
		{"float64", 0.25, 0.25},
		{"float32", float32(0.5), 0.5},
		{"negative zero", math.Copysign(0, -1), math.Copysign(0, -1)},
		{"NaN", math.NaN(), "NaN"},
		{"+Inf", math.Inf(1), "Infinity"},
		{"-Inf", math.Inf(-1), "-Infinity"},
		{"float32 Inf", float32(math.Inf(1)), "Infinity"},
		{"time", ts, "2024-01-02T08:04:05.6Z"},
		{"time pointer", &ts, "2024-01-02T08:04:05.6Z"},
		{"nil time pointer", nilTime, nil},
		{"zero time", time.Time{}, "0001-01-01T00:00:00Z"},
		{"bytes", []byte("any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw=="},
		{"bytes padding 1", []byte{0xff, 0xff}, "//8="},
		{"nil bytes", []byte(nil), nil},
		{"ref", ref, "a/b/c/d"},
		{"nil ref", nilRef, nil},
		{"ref outside a database", &firestore.DocumentRef{Path: "weird/path"}, "weird/path"},
		{"geo", &latlng.LatLng{Latitude: -33.5, Longitude: 151.25}, map[string]any{"latitude": -33.5, "longitude": 151.25}},
		{"nil geo", nilGeo, nil},
		{"vector64", firestore.Vector64{1, math.NaN()}, []any{1.0, "NaN"}},
		{"vector32", firestore.Vector32{0.5, 2}, []any{0.5, 2.0}},
		{"empty vector", firestore.Vector64{}, []any{}},
		{"array", []any{int64(1), []byte{1}, ts, []any{math.Inf(1)}}, []any{int64(1), "AQ==", "2024-01-02T08:04:05.6Z", []any{"Infinity"}}},
		{"nil array", []any(nil), nil},
		{"map", map[string]any{"a": map[string]any{"t": ts, "r": ref}}, map[string]any{"a": map[string]any{"t": "2024-01-02T08:04:05.6Z", "r": "a/b/c/d"}}},
		{"nil map", map[string]any(nil), nil},
		{"bson int32", firestore.BSONInt32(-5), int64(-5)},
		{"bson object id", firestore.BSONObjectID("507f1f77bcf86cd799439011"), "507f1f77bcf86cd799439011"},
		{"bson decimal128", firestore.BSONDecimal128("1.5"), "1.5"},
		{"bson timestamp", firestore.BSONTimestamp{Seconds: 10, Increment: 2}, map[string]any{"seconds": int64(10), "increment": int64(2)}},
		{"bson regex", firestore.BSONRegex{Pattern: "^a", Options: "i"}, map[string]any{"pattern": "^a", "options": "i"}},
		{"bson binary", firestore.BSONBinary{Subtype: 4, Data: []byte{1, 2}}, map[string]any{"subtype": int64(4), "data": "AQI="}},
		{"bson min key", firestore.BSONMinKey{}, map[string]any{"$minKey": int64(1)}},
		{"bson max key", firestore.BSONMaxKey{}, map[string]any{"$maxKey": int64(1)}},
		{"unknown type", fsStringer{}, "custom"},
		{"uint64 is unknown", uint64(5), "5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ToJSONValue(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				// DeepEqual cannot tell -0 from 0; the cases that matter
				// differ in type or value anyway.
				t.Fatalf("ToJSONValue(%#v) = %#v, want %#v", tc.in, got, tc.want)
			}
			if _, err := json.Marshal(got); err != nil {
				t.Fatalf("result does not encode: %v", err)
			}
		})
	}
}

func TestDataToJSONDoesNotMutate(t *testing.T) {
	ts := time.Unix(0, 0)
	inner := map[string]any{"t": ts}
	arr := []any{[]byte{1}}
	in := map[string]any{"m": inner, "a": arr}
	out := DataToJSON(in)
	if !reflect.DeepEqual(out, map[string]any{"m": map[string]any{"t": "1970-01-01T00:00:00Z"}, "a": []any{"AQ=="}}) {
		t.Fatalf("DataToJSON = %#v", out)
	}
	if inner["t"] != ts || !reflect.DeepEqual(arr[0], []byte{1}) {
		t.Fatal("DataToJSON modified its input")
	}
	if got := DataToJSON(nil); got == nil || len(got) != 0 {
		t.Fatalf("DataToJSON(nil) = %#v, want an empty map", got)
	}

	// The in-place variant converts the caller's own maps and slices.
	own := map[string]any{"m": map[string]any{"t": ts}, "a": []any{[]byte{1}}}
	res := dataToJSONInPlace(own)
	if !reflect.DeepEqual(res, out) || !reflect.DeepEqual(own, out) {
		t.Fatalf("dataToJSONInPlace = %#v", res)
	}
	if got := dataToJSONInPlace(nil); got == nil || len(got) != 0 {
		t.Fatalf("dataToJSONInPlace(nil) = %#v", got)
	}
}

func TestRelativePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"projects/p/databases/(default)/documents/tasks/t1", "tasks/t1"},
		{"projects/p/databases/db2/documents/projects/p1/tasks/t9", "projects/p1/tasks/t9"},
		{"projects/p/databases/d/documents/", "projects/p/databases/d/documents/"},
		{"projects/p/databases/d/documents", "projects/p/databases/d/documents"},
		{"projects//databases/d/documents/a/b", "projects//databases/d/documents/a/b"},
		{"projects/p/databases//documents/a/b", "projects/p/databases//documents/a/b"},
		{"project/p/databases/d/documents/a/b", "project/p/databases/d/documents/a/b"},
		{"projects/p/database/d/documents/a/b", "projects/p/database/d/documents/a/b"},
		{"projects/p/databases/d/document/a/b", "projects/p/databases/d/document/a/b"},
		{"tasks/t1", "tasks/t1"},
		{"", ""},
	}
	for _, tc := range tests {
		if got := relativePath(tc.in); got != tc.want {
			t.Errorf("relativePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzRelativePath(f *testing.F) {
	for _, s := range []string{
		"projects/p/databases/(default)/documents/tasks/t1",
		"projects/p/databases/d/documents/",
		"projects//databases/d/documents/a",
		"tasks/t1", "", "/////", "projects/a/databases/b/documents/c/d/e/f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := relativePath(name)
		if got == name {
			return
		}
		// A stripped path is a non-empty suffix after exactly the five
		// leading segments projects/P/databases/D/documents.
		prefix, ok := strings.CutSuffix(name, got)
		if !ok || got == "" {
			t.Fatalf("relativePath(%q) = %q is not a suffix", name, got)
		}
		seg := strings.Split(strings.TrimSuffix(prefix, "/"), "/")
		if len(seg) != 5 || seg[0] != "projects" || seg[1] == "" || seg[2] != "databases" || seg[3] == "" || seg[4] != "documents" || !strings.HasSuffix(prefix, "/") {
			t.Fatalf("relativePath(%q) = %q stripped the wrong prefix %q", name, got, prefix)
		}
	})
}

func TestValidCollectionPath(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"tasks", true},
		{"projects/p1/tasks", true},
		{"a/b/c/d/e", true},
		{"tasks/t1", false},
		{"", false},
		{"/tasks", false},
		{"tasks/", false},
		{"a//b", false},
		{"/", false},
		{"a/b/c/", false},
	}
	for _, tc := range tests {
		if got := validCollectionPath(tc.in); got != tc.want {
			t.Errorf("validCollectionPath(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzValidCollectionPath(f *testing.F) {
	for _, s := range []string{"tasks", "a/b/c", "a/b", "", "/", "a//b", "a/b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		// Reference: split and check.
		segs := strings.Split(p, "/")
		want := len(segs)%2 == 1
		for _, s := range segs {
			if s == "" {
				want = false
			}
		}
		if got := validCollectionPath(p); got != want {
			t.Fatalf("validCollectionPath(%q) = %v, want %v", p, got, want)
		}
	})
}

// FuzzToJSONValue: whatever the field values, the converted document
// encodes as JSON and decodes to the documented mapping.
func FuzzToJSONValue(f *testing.F) {
	f.Add(uint64(0), int64(0), "", []byte(nil), int64(0))
	f.Add(math.Float64bits(math.NaN()), int64(math.MinInt64), "\xff\xfe", []byte{0, 1, 2}, int64(1<<40))
	f.Add(math.Float64bits(math.Inf(-1)), int64(42), "héllo", []byte("abc"), int64(-1))
	f.Fuzz(func(t *testing.T, bits uint64, i int64, s string, b []byte, nanos int64) {
		fl := math.Float64frombits(bits)
		ts := time.Unix(0, nanos)
		in := map[string]any{
			"f": fl, "i": i, "s": s, "b": b, "t": ts,
			"arr": []any{fl, b, map[string]any{"t": ts}},
		}
		out := DataToJSON(in)
		enc, err := json.Marshal(out)
		if err != nil {
			t.Fatalf("encode %#v: %v", out, err)
		}
		var back map[string]any
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatal(err)
		}
		switch {
		case math.IsNaN(fl):
			if back["f"] != "NaN" {
				t.Fatalf("NaN became %v", back["f"])
			}
		case math.IsInf(fl, 0):
			if _, ok := back["f"].(string); !ok {
				t.Fatalf("Inf became %v", back["f"])
			}
		default:
			if back["f"] != fl {
				t.Fatalf("float %v became %v", fl, back["f"])
			}
		}
		if out["i"] != i {
			t.Fatalf("int %d became %v", i, out["i"])
		}
		pt, err := time.Parse(time.RFC3339Nano, out["t"].(string))
		if err != nil || !pt.Equal(ts) {
			t.Fatalf("time %v became %v (%v)", ts, out["t"], err)
		}
		if b != nil {
			if out["b"] != ToJSONValue(b) || len(out["b"].(string))%4 != 0 {
				t.Fatalf("bytes became %v", out["b"])
			}
		}
	})
}

func TestFilterValueToFirestore(t *testing.T) {
	tests := []struct {
		in, want any
	}{
		{nil, nil},
		{true, true},
		{"s", "s"},
		{int64(5), int64(5)},
		{2.5, 2.5},
		{json.Number("12"), int64(12)},
		{json.Number("-1.5"), -1.5},
		{json.Number("1e400"), "1e400"},
		{json.Number("99999999999999999999"), 1e20},
		{3, int64(3)},
		{int32(3), int64(3)},
		{float32(0.5), 0.5},
		{[]any{json.Number("1"), "a", []any{json.Number("2.5")}}, []any{int64(1), "a", []any{2.5}}},
	}
	for _, tc := range tests {
		if got := FilterValueToFirestore(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("FilterValueToFirestore(%#v) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}
