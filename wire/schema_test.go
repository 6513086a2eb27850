package wire

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// The JSON Schemas in docs/schema are the contract for clients in other
// languages. These tests check them against the Go types: the properties
// of every frame (and of its nested objects) are exactly the JSON fields of
// the Go type, required properties are exactly the fields encoded without
// omitempty, enums are exactly the package's constants, and frames encoded
// by this package (including the hand-spliced snapshot and changes frames)
// validate against their schema.

const schemaDir = "../docs/schema"

type schema map[string]any

func loadSchema(t *testing.T, name string) schema {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(schemaDir, name+".json"))
	if err != nil {
		t.Fatalf("schema %s: %v", name, err)
	}
	var s schema
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("schema %s is not JSON: %v", name, err)
	}
	return s
}

// jsonFields returns the JSON names of typ's fields and which of them are
// encoded always (no omitempty).
func jsonFields(typ reflect.Type) (names []string, always []string) {
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if tag == "" || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		names = append(names, name)
		if !strings.Contains(opts, "omitempty") {
			always = append(always, name)
		}
	}
	sort.Strings(names)
	sort.Strings(always)
	return names, always
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func strs(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	sort.Strings(out)
	return out
}

// sub returns the object schema at a JSON pointer-ish path inside s
// ("" = s itself; "$defs/doc"; "properties/results/items").
func sub(t *testing.T, s schema, path string) map[string]any {
	t.Helper()
	cur := map[string]any(s)
	if path == "" {
		return cur
	}
	for _, seg := range strings.Split(path, "/") {
		next, ok := cur[seg].(map[string]any)
		if !ok {
			t.Fatalf("schema has no %s", path)
		}
		cur = next
	}
	return cur
}

// notYetInWire lists schema properties the protocol text defines that the
// Go types do not carry yet. The test fails when one appears in the Go
// type, so the list cannot go stale.
var notYetInWire = map[string]bool{}

func TestSchemaMatchesWireTypes(t *testing.T) {
	tests := []struct {
		schema, path string
		typ          any
		// checkRequired: required == the fields encoded without omitempty.
		// Off for decoded client frames, whose Go fields are all optional
		// on input (the decoder checks presence per message type).
		checkRequired bool
		// subset: the schema describes one message type of a union
		// struct (ClientMessage): its properties are a subset of the
		// struct's fields.
		subset bool
	}{
		{"welcome", "", Welcome{}, true, false},
		{"subscribed", "", Subscribed{}, true, false},
		{"snapshot", "", Snapshot{}, true, false},
		{"snapshot", "$defs/doc", Doc{}, true, false},
		{"changes", "", Changes{}, true, false},
		{"changes", "$defs/change", Change{}, true, false},
		{"unsubscribed", "", Unsubscribed{}, true, false},
		{"auth_expiring", "", AuthExpiring{}, true, false},
		{"pong", "", Pong{}, true, false},
		{"written", "", Written{}, true, false},
		{"written", "properties/results/items", WriteResult{}, true, false},
		{"write", "", rawWrite{}, false, false},
		{"write", "$defs/op", rawOp{}, false, false},
		{"write", "$defs/op/properties/precondition", rawPrecond{}, false, false},
		{"subscribe", "", ClientMessage{}, false, true},
		{"subscribe", "$defs/filter", Filter{}, false, false},
		{"subscribe", "$defs/order", Order{}, true, false},
		{"subscribe", "$defs/resume", Resume{}, true, false},
		{"auth", "", ClientMessage{}, false, true},
		{"unsubscribe", "", ClientMessage{}, false, true},
		{"ping", "", ClientMessage{}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.schema+"/"+tt.path, func(t *testing.T) {
			obj := sub(t, loadSchema(t, tt.schema), tt.path)
			if obj["additionalProperties"] != false {
				t.Errorf("additionalProperties must be false")
			}
			props := keys(obj["properties"].(map[string]any))
			names, always := jsonFields(reflect.TypeOf(tt.typ))
			if tt.subset {
				for _, p := range props {
					key := tt.schema + "." + p
					in := slices.Contains(names, p)
					switch {
					case notYetInWire[key] && in:
						t.Errorf("%s is in the Go type now: remove it from notYetInWire", key)
					case !notYetInWire[key] && !in:
						t.Errorf("schema property %q is not a field of %T (%v)", p, tt.typ, names)
					}
				}
			} else if !slices.Equal(props, names) {
				t.Errorf("schema properties %v, Go fields %v", props, names)
			}
			if tt.checkRequired {
				if req := strs(obj["required"]); !slices.Equal(req, always) {
					t.Errorf("schema required %v, Go fields without omitempty %v", req, always)
				}
			}
		})
	}
}

// TestSchemaErrorFrame: the error frame is the union of Error and
// WriteError; required are the fields both always encode.
func TestSchemaErrorFrame(t *testing.T) {
	obj := sub(t, loadSchema(t, "error"), "")
	a, aa := jsonFields(reflect.TypeOf(Error{}))
	b, ba := jsonFields(reflect.TypeOf(WriteError{}))
	union := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(a), b...))))
	if props := keys(obj["properties"].(map[string]any)); !slices.Equal(props, union) {
		t.Errorf("schema properties %v, Go fields %v", props, union)
	}
	var both []string
	for _, f := range aa {
		if slices.Contains(ba, f) {
			both = append(both, f)
		}
	}
	if req := strs(obj["required"]); !slices.Equal(req, both) {
		t.Errorf("schema required %v, always encoded by both %v", req, both)
	}
}

func TestSchemaEnumsAndTypes(t *testing.T) {
	sorted := func(v ...string) []string { return slices.Sorted(slices.Values(v)) }
	tests := []struct {
		schema, path string
		want         []string
	}{
		{"error", "properties/code", sorted(CodeBadRequest, CodeUnauthorized, CodeForbidden, CodeNotFound, CodeRateLimited,
			CodeLimitExceeded, CodeUnavailable, CodeInternal, CodeAlreadyExists, CodeFailedPrecondition)},
		{"unsubscribed", "properties/reason", sorted(ReasonClient, ReasonForbidden, ReasonOrgChanged, ReasonUpstreamError)},
		{"changes", "$defs/change/properties/kind", sorted(KindAdded, KindModified, KindRemoved)},
		{"write", "$defs/op/properties/op", sorted(WriteOps...)},
		{"write", "$defs/transform/properties/$transform", sorted(TransformServerTimestamp, TransformIncrement, TransformArrayUnion, TransformArrayRemove)},
		{"subscribe", "$defs/filter/properties/op", sorted("==", "!=", "<", "<=", ">", ">=", "in", "not-in", "array-contains", "array-contains-any")},
	}
	for _, tt := range tests {
		got := strs(sub(t, loadSchema(t, tt.schema), tt.path)["enum"])
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s %s: enum %v, constants %v", tt.schema, tt.path, got, tt.want)
		}
	}
	for _, op := range sub(t, loadSchema(t, "subscribe"), "$defs/filter/properties/op")["enum"].([]any) {
		if !validOp(op.(string)) {
			t.Errorf("the decoder refuses the schema's operator %q", op)
		}
	}
	types := map[string]string{
		"auth": TypeAuth, "subscribe": TypeSubscribe, "unsubscribe": TypeUnsubscribe, "ping": TypePing, "write": TypeWrite,
		"welcome": TypeWelcome, "subscribed": TypeSubscribed, "snapshot": TypeSnapshot, "changes": TypeChanges,
		"unsubscribed": TypeUnsubscribed, "error": TypeError, "auth_expiring": TypeAuthExpiring, "pong": TypePong, "written": TypeWritten,
	}
	files, _ := filepath.Glob(filepath.Join(schemaDir, "*.json"))
	if len(files) != len(types) {
		t.Errorf("%d schema files, %d frame types", len(files), len(types))
	}
	for name, typ := range types {
		if got := sub(t, loadSchema(t, name), "properties/type")["const"]; got != typ {
			t.Errorf("%s: type const %v, want %q", name, got, typ)
		}
	}
}

// validate checks v against the subset of JSON Schema the frame schemas
// use: type, const, enum, properties, required, additionalProperties,
// items, $ref (#/$defs/...), minimum, minLength, maxLength, minItems,
// maxItems.
func validate(root, s map[string]any, v any, at string) error {
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/$defs/")
		def, ok := root["$defs"].(map[string]any)[name].(map[string]any)
		if !ok {
			return fmt.Errorf("%s: unresolved %s", at, ref)
		}
		return validate(root, def, v, at)
	}
	if c, ok := s["const"]; ok && c != v {
		return fmt.Errorf("%s: %v is not %v", at, v, c)
	}
	if e, ok := s["enum"].([]any); ok && !slices.Contains(e, v) {
		return fmt.Errorf("%s: %v not in %v", at, v, e)
	}
	switch s["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not an object", at)
		}
		props, _ := s["properties"].(map[string]any)
		required, _ := s["required"].([]any)
		for _, r := range required {
			if _, ok := m[r.(string)]; !ok {
				return fmt.Errorf("%s: missing %s", at, r)
			}
		}
		for k, e := range m {
			ps, ok := props[k].(map[string]any)
			if !ok {
				if ap, ok := s["additionalProperties"].(map[string]any); ok {
					if err := validate(root, ap, e, at+"."+k); err != nil {
						return err
					}
					continue
				}
				if s["additionalProperties"] == false {
					return fmt.Errorf("%s: unexpected property %s", at, k)
				}
				continue
			}
			if err := validate(root, ps, e, at+"."+k); err != nil {
				return err
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: not an array", at)
		}
		if n, ok := s["minItems"].(float64); ok && float64(len(a)) < n {
			return fmt.Errorf("%s: fewer than %v items", at, n)
		}
		if n, ok := s["maxItems"].(float64); ok && float64(len(a)) > n {
			return fmt.Errorf("%s: more than %v items", at, n)
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range a {
				if err := validate(root, items, e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: not a string", at)
		}
		if n, ok := s["minLength"].(float64); ok && float64(len(str)) < n {
			return fmt.Errorf("%s: shorter than %v", at, n)
		}
		if n, ok := s["maxLength"].(float64); ok && float64(len(str)) > n {
			return fmt.Errorf("%s: longer than %v", at, n)
		}
	case "integer", "number":
		f, ok := v.(float64)
		if !ok {
			return fmt.Errorf("%s: not a number", at)
		}
		if s["type"] == "integer" && f != float64(int64(f)) {
			return fmt.Errorf("%s: not an integer", at)
		}
		if n, ok := s["minimum"].(float64); ok && f < n {
			return fmt.Errorf("%s: below %v", at, n)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: not a boolean", at)
		}
	}
	return nil
}

func TestEncodedFramesValidate(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	doc := Doc{ID: "t1", Path: "tasks/t1", Data: json.RawMessage(`{"title":"x","n":1,"at":"2026-01-02T03:04:05Z"}`), UpdateTime: now.Format(time.RFC3339Nano)}
	idx := 2
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	write, err := EncodeWrite(WriteRequest{ID: "w1", IdempotencyKey: "k-1", Ops: []WriteOp{
		{Op: OpCreate, Path: "tasks", Data: map[string]any{"title": "x", "at": &Transform{Kind: TransformServerTimestamp}}},
		{Op: OpUpdate, Path: "tasks/t1", Updates: []FieldUpdate{{Path: []string{"n"}, Value: &Transform{Kind: TransformIncrement, By: int64(1)}}}, UpdateTime: now},
		{Op: OpDelete, Path: "tasks/t2"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		schema string
		frame  []byte
	}{
		{"welcome", mustJSON(Welcome{Type: TypeWelcome, UserID: "user_a", OrgID: "org_a", SessionID: "sess", ExpiresAt: now})},
		{"welcome", mustJSON(Welcome{Type: TypeWelcome, UserID: "user_a", SessionID: "sess", ExpiresAt: now})},
		{"subscribed", mustJSON(Subscribed{Type: TypeSubscribed, ID: "s1", Epoch: "e1", Resumed: true})},
		{"snapshot", SnapshotFrame(7, []Doc{doc}, false).AppendTo(nil, QuoteID("s1"))},
		{"snapshot", SnapshotFrame(7, nil, true).AppendTo(nil, QuoteID("s1"))},
		{"changes", ChangesFrame(8, now, []Change{
			{Kind: KindAdded, ID: "t1", Path: "tasks/t1", Data: doc.Data, UpdateTime: doc.UpdateTime},
			{Kind: KindRemoved, ID: "t2", Path: "tasks/t2"},
		}).AppendTo(nil, QuoteID("s1"))},
		{"unsubscribed", UnsubscribedFrame(ReasonOrgChanged, "").AppendTo(nil, QuoteID("s1"))},
		{"error", mustJSON(Error{Type: TypeError, ID: "s1", Code: CodeLimitExceeded, Message: "too many", RetryAfterMS: 500})},
		{"error", mustJSON(WriteError{Type: TypeError, ID: "w1", Code: CodeForbidden, Index: &idx, Message: "no"})},
		{"auth_expiring", mustJSON(AuthExpiring{Type: TypeAuthExpiring, ExpiresAt: now})},
		{"pong", mustJSON(Pong{Type: TypePong, ID: "p1"})},
		{"written", mustJSON(Written{Type: TypeWritten, ID: "w1", CommitTime: doc.UpdateTime, Results: []WriteResult{{Path: "tasks/t1", UpdateTime: doc.UpdateTime}}})},
		{"write", write},
		{"subscribe", mustJSON(ClientMessage{Type: TypeSubscribe, ID: "s1", Collection: "tasks", Where: []Filter{{Field: "status", Op: "==", Value: "open"}},
			OrderBy: []Order{{Field: "created_at", Direction: "desc"}}, Limit: 10, Resume: &Resume{Epoch: "e1", Seq: 4}})},
		{"auth", mustJSON(ClientMessage{Type: TypeAuth, Token: "jwt"})},
		{"unsubscribe", mustJSON(ClientMessage{Type: TypeUnsubscribe, ID: "s1"})},
		{"ping", mustJSON(ClientMessage{Type: TypePing, ID: "p1"})},
	}
	for i, tt := range tests {
		var v any
		if err := json.Unmarshal(tt.frame, &v); err != nil {
			t.Fatalf("%d %s: %v\n%s", i, tt.schema, err, tt.frame)
		}
		s := loadSchema(t, tt.schema)
		if err := validate(s, s, v, tt.schema); err != nil {
			t.Errorf("%d: %v\n%s", i, err, tt.frame)
		}
	}
}

// TestSchemaValidatorRefuses keeps the validator honest: frames that break
// the schemas are refused.
func TestSchemaValidatorRefuses(t *testing.T) {
	tests := []struct {
		schema, frame, want string
	}{
		{"welcome", `{"type":"welcome","user_id":"u","session_id":"s"}`, "missing expires_at"},
		{"welcome", `{"type":"welcome","user_id":"u","session_id":"s","expires_at":"x","extra":1}`, "unexpected property extra"},
		{"changes", `{"type":"changes","sub":"s","seq":1,"changes":[{"kind":"gone","id":"a","path":"t/a"}]}`, "not in"},
		{"snapshot", `{"type":"snapshot","sub":"s","seq":-1,"docs":[],"final":true}`, "below"},
		{"write", `{"type":"write","id":"w","idempotency_key":"k","ops":[]}`, "fewer than"},
		{"error", `{"type":"error","code":"teapot","message":""}`, "not in"},
		{"subscribe", `{"type":"subscribe","id":"s","where":[{"field":"a","op":"~","value":1}]}`, "not in"},
	}
	for _, tt := range tests {
		var v any
		if err := json.Unmarshal([]byte(tt.frame), &v); err != nil {
			t.Fatal(err)
		}
		s := loadSchema(t, tt.schema)
		err := validate(s, s, v, tt.schema)
		if err == nil || !regexp.MustCompile(regexp.QuoteMeta(tt.want)).MatchString(err.Error()) {
			t.Errorf("%s %s: %v, want an error with %q", tt.schema, tt.frame, err, tt.want)
		}
	}
}
