package wire

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

const exampleWrite = `{"type":"write","id":"w1","idempotency_key":"k-123",
 "ops":[
  {"op":"create","path":"tasks/t1","data":{"title":"x"}},
  {"op":"create","path":"tasks","data":{"title":"generated id"}},
  {"op":"set","path":"tasks/t2","data":{"title":"y"},"merge":["title"]},
  {"op":"update","path":"tasks/t1","data":{"status":"done","n":{"$transform":"increment","by":1}},
   "precondition":{"update_time":"2026-01-01T00:00:00.123456Z"}},
  {"op":"delete","path":"tasks/t3","precondition":{"exists":true}}]}`

func TestDecodeWriteExample(t *testing.T) {
	req, err := DecodeWrite([]byte(exampleWrite))
	if err != nil {
		t.Fatal(err)
	}
	if req.ID != "w1" || req.IdempotencyKey != "k-123" || len(req.Ops) != 5 {
		t.Fatalf("%+v", req)
	}
	if !req.Ops[1].IsCollectionPath() || req.Ops[0].IsCollectionPath() {
		t.Fatal("collection path detection")
	}
	if !reflect.DeepEqual(req.Ops[2].Merge, [][]string{{"title"}}) {
		t.Fatalf("merge %v", req.Ops[2].Merge)
	}
	up := req.Ops[3]
	want := []FieldUpdate{{Path: []string{"n"}, Value: &Transform{Kind: TransformIncrement, By: int64(1)}}, {Path: []string{"status"}, Value: "done"}}
	if !reflect.DeepEqual(up.Updates, want) {
		t.Fatalf("updates %#v", up.Updates)
	}
	if wt := time.Date(2026, 1, 1, 0, 0, 0, 123456000, time.UTC); !up.UpdateTime.Equal(wt) {
		t.Fatalf("update_time %v", up.UpdateTime)
	}
	if d := req.Ops[4]; d.Exists == nil || !*d.Exists || d.Data != nil {
		t.Fatalf("delete %+v", d)
	}
	// The same frame through the client decoder.
	m, err := DecodeClient([]byte(exampleWrite))
	if err != nil || m.Write == nil || len(m.Write.Ops) != 5 || m.ID != "w1" {
		t.Fatalf("DecodeClient: %+v %v", m, err)
	}
}

func TestDecodeWriteValues(t *testing.T) {
	req, err := DecodeWrite([]byte(`{"ops":[{"op":"set","path":"a/b","data":{
		"i":3,"f":2.5,"e":1e3,"s":"x","b":true,"n":null,"arr":[1,"a",{"k":[2]}],
		"m":{"ts":{"$transform":"server_timestamp"},"u":{"$transform":"array_union","values":[1,2]},
		"r":{"$transform":"array_remove","values":["x"]},"inc":{"$transform":"increment","by":0.5}}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := req.Ops[0].Data
	if d["i"] != int64(3) || d["f"] != 2.5 || d["e"] != float64(1000) || d["s"] != "x" || d["b"] != true || d["n"] != nil {
		t.Fatalf("scalars %#v", d)
	}
	m := d["m"].(map[string]any)
	if tr := m["ts"].(*Transform); tr.Kind != TransformServerTimestamp {
		t.Fatal(tr)
	}
	if tr := m["u"].(*Transform); tr.Kind != TransformArrayUnion || !reflect.DeepEqual(tr.Values, []any{int64(1), int64(2)}) {
		t.Fatal(tr)
	}
	if tr := m["r"].(*Transform); tr.Kind != TransformArrayRemove || !reflect.DeepEqual(tr.Values, []any{"x"}) {
		t.Fatal(tr)
	}
	if tr := m["inc"].(*Transform); tr.By != 0.5 {
		t.Fatal(tr)
	}
}

func TestDecodeWriteErrors(t *testing.T) {
	many := make([]string, MaxWriteOps+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"op":"delete","path":"t/d%d"}`, i)
	}
	deep := `1`
	for i := 0; i < MaxValueDepth; i++ {
		deep = `{"a":` + deep + `}`
	}
	deeper := `{"a":` + deep + `}`
	cases := []struct {
		in, want string
		index    int
	}{
		{`[]`, "one JSON object", -1},
		{`{"ops":[]}`, "at least one operation", -1},
		{`{"type":"subscribe","ops":[{"op":"delete","path":"a/b"}]}`, `type must be "write"`, -1},
		{`{"ops":[` + strings.Join(many, ",") + `]}`, "at most 500 operations", -1},
		{`{"idempotency_key":"` + strings.Repeat("k", MaxIdempotencyKeyLength+1) + `","ops":[{"op":"delete","path":"a/b"}]}`, "idempotency_key longer", -1},
		{`{"ops":[{"op":"delete","path":"a/b"}]} x`, "trailing", -1},
		{`{"ops":[{"op":"delete","path":"a/b"},{"op":"zap","path":"a/b"}]}`, "unknown op", 1},
		{`{"ops":[{"path":"a/b"}]}`, "missing op", 0},
		{`{"ops":[{"op":"delete","path":"a/b","colour":1}]}`, `unknown key "colour"`, 0},
		{`{"ops":[{"op":"delete","path":"a"}]}`, "names a collection", 0},
		{`{"ops":[{"op":"delete","path":"a//b"}]}`, "empty segment", 0},
		{`{"ops":[{"op":"delete","path":"/a/b"}]}`, "start or end", 0},
		{`{"ops":[{"op":"delete","path":"a/__x__"}]}`, "reserved", 0},
		{`{"ops":[{"op":"delete","path":"a/b","data":{}}]}`, "delete takes no data", 0},
		{`{"ops":[{"op":"create","path":"a/b"}]}`, "create needs data", 0},
		{`{"ops":[{"op":"create","path":"a/b","data":[1]}]}`, "must be an object", 0},
		{`{"ops":[{"op":"update","path":"a/b","data":{}}]}`, "at least one field", 0},
		{`{"ops":[{"op":"update","path":"a/b","data":{"a":1,"a.b":2}}]}`, "prefix", 0},
		{`{"ops":[{"op":"update","path":"a/b","data":{"a":1,"` + "`a`" + `":2}}]}`, "twice", 0},
		{`{"ops":[{"op":"update","path":"a/b","data":{"a..b":1}}]}`, "empty segment", 0},
		{`{"ops":[{"op":"update","path":"a/b","data":{"x":1},"merge":["x"]}]}`, "merge is only for set", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"x":1},"merge":["y"]}]}`, "not in data", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"x":1},"merge":[]}]}`, "at least one field path", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"$where":1}}]}`, "beginning with $", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"m":{"$set":1}}}]}`, "beginning with $", 0},
		{`{"ops":[{"op":"update","path":"a/b","data":{"$x":1}}]}`, "beginning with $", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"m":{"$transform":"delete"}}}]}`, "unknown $transform", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"m":{"$transform":"increment"}}}]}`, "needs a number", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"m":{"$transform":"increment","by":"1"}}}]}`, "needs a number", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"m":{"$transform":"server_timestamp","by":1}}}]}`, "takes no key", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"m":{"$transform":"array_union"}}}]}`, "needs an array", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"m":[{"$transform":"server_timestamp"}]}}]}`, "inside arrays", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"m":[{"k":{"$transform":"server_timestamp"}}]}}]}`, "inside arrays", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"m":[[1]]}}]}`, "directly contain an array", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"m":99999999999999999999}}]}`, "out of range", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"m":1e999}}]}`, "out of range", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"":1}}]}`, "empty field name", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":{"__k__":1}}]}`, "reserved", 0},
		{`{"ops":[{"op":"set","path":"a/b","data":` + deeper + `}]}`, "deeper than", 0},
		{`{"ops":[{"op":"create","path":"a/b","data":{},"precondition":{"exists":false}}]}`, "create takes no precondition", 0},
		{`{"ops":[{"op":"update","path":"a/b","data":{"x":1},"precondition":{"exists":false}}]}`, "contradicts", 0},
		{`{"ops":[{"op":"delete","path":"a/b","precondition":{"exists":true,"update_time":"2026-01-01T00:00:00Z"}}]}`, "not both", 0},
		{`{"ops":[{"op":"delete","path":"a/b","precondition":{}}]}`, "needs exists or update_time", 0},
		{`{"ops":[{"op":"delete","path":"a/b","precondition":{"update_time":"yesterday"}}]}`, "RFC 3339", 0},
	}
	for _, c := range cases {
		_, err := DecodeWrite([]byte(c.in))
		var we *WriteDecodeError
		if !errors.As(err, &we) {
			t.Errorf("%.80s: got %v, want a WriteDecodeError", c.in, err)
			continue
		}
		if !strings.Contains(we.Msg, c.want) || we.Index != c.index {
			t.Errorf("%.80s: got index %d %q, want index %d and %q", c.in, we.Index, we.Msg, c.index, c.want)
		}
	}
	// At the edges: exactly MaxWriteOps operations, exactly MaxValueDepth
	// levels, the longest idempotency key.
	if _, err := DecodeWrite([]byte(`{"ops":[` + strings.Join(many[:MaxWriteOps], ",") + `]}`)); err != nil {
		t.Errorf("%d ops: %v", MaxWriteOps, err)
	}
	if _, err := DecodeWrite([]byte(`{"ops":[{"op":"set","path":"a/b","data":` + deep + `}]}`)); err != nil {
		t.Errorf("depth %d: %v", MaxValueDepth, err)
	}
	if _, err := DecodeWrite([]byte(`{"idempotency_key":"` + strings.Repeat("k", MaxIdempotencyKeyLength) + `","ops":[{"op":"delete","path":"a/b"}]}`)); err != nil {
		t.Errorf("longest key: %v", err)
	}
	// Through DecodeClient: a write needs an id.
	if _, err := DecodeClient([]byte(`{"type":"write","ops":[{"op":"delete","path":"a/b"}]}`)); err == nil || !strings.Contains(err.Error(), "needs an id") {
		t.Errorf("write without id: %v", err)
	}
}

func TestEncodeWriteRoundTrip(t *testing.T) {
	req, err := DecodeWrite([]byte(exampleWrite))
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncodeWrite(req)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeWrite(b)
	if err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	if !reflect.DeepEqual(req, back) {
		t.Fatalf("round trip changed the request:\n%#v\n%#v", req, back)
	}
}

// FuzzDecodeWrite: DecodeWrite never panics; what it accepts is within the
// limits and survives an encode/decode round trip unchanged.
func FuzzDecodeWrite(f *testing.F) {
	f.Add([]byte(exampleWrite))
	f.Add([]byte(`{"ops":[{"op":"set","path":"a/b","data":{"m":{"$transform":"array_union","values":[1,{"k":"v"}]},"f":1.0,"g":-0.0}}]}`))
	f.Add([]byte(`{"ops":[{"op":"update","path":"a/b/c/d","data":{"` + "`a.b`" + `.c":{"$transform":"server_timestamp"}}}]}`))
	f.Add([]byte(`{"ops":[{"op":"delete","path":"a/b","precondition":{"update_time":"2026-01-01T00:00:00Z"}}]}`))
	f.Add([]byte(`{"ops":[{"op":"create","path":"a","data":{"x":[1,2,{"y":null}]}}]}`))
	f.Add([]byte(`{"ops":[{"op":"set","path":"a/b","data":{"$x":1}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeWrite(b)
		if err != nil {
			var we *WriteDecodeError
			if !errors.As(err, &we) {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if len(req.Ops) == 0 || len(req.Ops) > MaxWriteOps {
			t.Fatalf("%d ops accepted", len(req.Ops))
		}
		enc, err := EncodeWrite(req)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		back, err := DecodeWrite(enc)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
		if !reflect.DeepEqual(req, back) {
			t.Fatalf("round trip changed the request:\n%#v\n%#v", req, back)
		}
	})
}
