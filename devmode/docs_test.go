package devmode

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestDocsCRUD(t *testing.T) {
	h, c := testHandler(t)
	ctx := context.Background()

	// POST creates a document with an auto id.
	before := time.Now()
	w := do(t, h, http.MethodPost, "/dev/docs/tasks",
		`{"org_id":"org_acme","title":"Buy milk","status":"open","visibility":"public","n":3,"f":2.5,"big":1e3,`+
			`"created_at":{"$time":"now"},"due":{"$time":"2026-01-02T03:04:05Z"},"when":"2026-01-02T03:04:05Z",`+
			`"tags":["a",1,{"k":true}],"nested":{"x":null,"y":-9223372036854775808}}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("POST: %d %s", w.Code, w.Body.String())
	}
	var created docResponse
	decode(t, w, &created)
	if created.ID == "" || created.Path != "tasks/"+created.ID || created.UpdateTime == "" {
		t.Fatalf("POST response %+v", created)
	}
	snap, err := c.Doc(created.Path).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := snap.Data()
	ts, ok := got["created_at"].(time.Time)
	if !ok || ts.Before(before.Add(-time.Minute)) || ts.After(time.Now().Add(time.Minute)) {
		t.Errorf("created_at = %#v, want a server timestamp", got["created_at"])
	}
	if due, ok := got["due"].(time.Time); !ok || !due.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("due = %#v", got["due"])
	}
	delete(got, "created_at")
	delete(got, "due")
	want := map[string]any{
		"org_id": "org_acme", "title": "Buy milk", "status": "open", "visibility": "public",
		"n": int64(3), "f": 2.5, "big": float64(1000), "when": "2026-01-02T03:04:05Z",
		"tags":   []any{"a", int64(1), map[string]any{"k": true}},
		"nested": map[string]any{"x": nil, "y": int64(-9223372036854775808)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stored %#v\nwant %#v", got, want)
	}

	// PATCH merges.
	w = do(t, h, http.MethodPatch, "/dev/docs/"+created.Path, `{"status":"done","nested":{"z":1}}`)
	if w.Code != http.StatusOK {
		t.Fatalf("PATCH: %d %s", w.Code, w.Body.String())
	}
	snap, err = c.Doc(created.Path).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := snap.Data(); d["status"] != "done" || d["title"] != "Buy milk" ||
		!reflect.DeepEqual(d["nested"], map[string]any{"x": nil, "y": int64(-9223372036854775808), "z": int64(1)}) {
		t.Errorf("after PATCH: %#v", d)
	}

	// PUT replaces.
	w = do(t, h, http.MethodPut, "/dev/docs/"+created.Path, `{"title":"Replaced"}`)
	if w.Code != http.StatusOK {
		t.Fatalf("PUT: %d %s", w.Code, w.Body.String())
	}
	var put docResponse
	decode(t, w, &put)
	if put.ID != created.ID || put.Path != created.Path || put.UpdateTime == "" {
		t.Errorf("PUT response %+v", put)
	}
	snap, err = c.Doc(created.Path).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := snap.Data(); !reflect.DeepEqual(d, map[string]any{"title": "Replaced"}) {
		t.Errorf("after PUT: %#v", d)
	}

	// PUT on a subcollection document creates it.
	w = do(t, h, http.MethodPut, "/dev/docs/projects/p1/tasks/x1", `{"org_id":"org_acme","title":"Sub"}`)
	if w.Code != http.StatusOK {
		t.Fatalf("PUT subcollection: %d %s", w.Code, w.Body.String())
	}
	if _, err := c.Doc("projects/p1/tasks/x1").Get(ctx); err != nil {
		t.Errorf("subcollection doc: %v", err)
	}

	// DELETE deletes.
	w = do(t, h, http.MethodDelete, "/dev/docs/"+created.Path, "")
	if w.Code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", w.Code, w.Body.String())
	}
	if _, err := c.Doc(created.Path).Get(ctx); status.Code(err) != codes.NotFound {
		t.Errorf("after DELETE: %v", err)
	}
}

func TestDocsErrors(t *testing.T) {
	h, _ := testHandler(t)
	atLimit := `{"s":"` + strings.Repeat("x", MaxDocBodyBytes-8) + `"}`
	if len(atLimit) != MaxDocBodyBytes {
		t.Fatalf("test body is %d bytes", len(atLimit))
	}
	overLimit := `{"s":"` + strings.Repeat("x", MaxDocBodyBytes-7) + `"}`
	tests := []struct {
		name, method, path, body, contentType string
		want                                  int
		wantErr                               string
	}{
		{"body at the limit", http.MethodPut, "tasks/big", atLimit, "application/json", http.StatusOK, ""},
		{"body over the limit", http.MethodPut, "tasks/big", overLimit, "application/json", http.StatusRequestEntityTooLarge, "larger than"},
		{"POST to a document path", http.MethodPost, "tasks/t1", `{}`, "application/json", http.StatusBadRequest, "collection path"},
		{"PUT to a collection path", http.MethodPut, "tasks", `{}`, "application/json", http.StatusBadRequest, "document path"},
		{"DELETE a collection path", http.MethodDelete, "projects/p1/tasks", "", "", http.StatusBadRequest, "document path"},
		{"empty path", http.MethodPost, "", `{}`, "application/json", http.StatusBadRequest, "empty path"},
		// ServeMux cleans "//" and "/../" with a redirect before routing;
		// splitPath's own checks are in TestSplitPath.
		{"empty segment is cleaned", http.MethodPut, "tasks//t1", `{}`, "application/json", http.StatusTemporaryRedirect, ""},
		{"dot-dot segment", http.MethodPut, "tasks/%2E%2E", `{}`, "application/json", http.StatusBadRequest, "not allowed"},
		{"reserved id", http.MethodPut, "tasks/__x__", `{}`, "application/json", http.StatusBadRequest, "reserved"},
		{"escaped slash", http.MethodPut, "tasks%2Ft1%2Fmore", `{}`, "application/json", http.StatusBadRequest, "document path"},
		{"escaped empty segment", http.MethodPut, "tasks%2F%2Ft1", `{}`, "application/json", http.StatusBadRequest, "empty segment"},
		{"no content type", http.MethodPost, "tasks", `{}`, "", http.StatusUnsupportedMediaType, "application/json"},
		{"text/plain", http.MethodPost, "tasks", `{}`, "text/plain", http.StatusUnsupportedMediaType, "application/json"},
		{"not JSON", http.MethodPost, "tasks", `{`, "application/json", http.StatusBadRequest, "not JSON"},
		{"array body", http.MethodPost, "tasks", `[1]`, "application/json", http.StatusBadRequest, "JSON object"},
		{"trailing data", http.MethodPost, "tasks", `{} {}`, "application/json", http.StatusBadRequest, "trailing"},
		{"bad $time", http.MethodPost, "tasks", `{"t":{"$time":"tomorrow"}}`, "application/json", http.StatusBadRequest, "$time"},
		{"nested arrays", http.MethodPost, "tasks", `{"a":[[1]]}`, "application/json", http.StatusBadRequest, "arrays cannot directly contain arrays"},
		{"server time in array", http.MethodPost, "tasks", `{"a":[{"t":{"$time":"now"}}]}`, "application/json", http.StatusBadRequest, "inside an array"},
		{"huge number", http.MethodPost, "tasks", `{"n":1e999}`, "application/json", http.StatusBadRequest, "out of range"},
		{"PATCH missing is a create", http.MethodPatch, "tasks/new", `{"a":1}`, "application/json", http.StatusOK, ""},
		{"charset is fine", http.MethodPut, "tasks/cs", `{"a":1}`, "application/json; charset=utf-8", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := loopbackReq(tt.method, "/dev/docs/"+tt.path, strings.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body.String())
			}
			if tt.wantErr != "" {
				if msg := errorOf(t, w); !strings.Contains(msg, tt.wantErr) {
					t.Errorf("error %q does not mention %q", msg, tt.wantErr)
				}
			}
		})
	}
}

func TestDocsFirestoreErrors(t *testing.T) {
	h, c := testHandler(t)
	// Firestore refuses a write whose data it cannot store: 400 from its
	// InvalidArgument (a field name over 1500 bytes).
	w := do(t, h, http.MethodPut, "/dev/docs/tasks/long", `{"`+strings.Repeat("f", 1600)+`":1}`)
	if w.Code != http.StatusBadRequest {
		t.Errorf("long field name: %d %s", w.Code, w.Body.String())
	}
	// An unreachable Firestore: 503.
	_ = c.Close()
	w = do(t, h, http.MethodPut, "/dev/docs/tasks/x", `{"a":1}`)
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("closed client: %d %s", w.Code, w.Body.String())
	}
}

func TestDecodeDocBody(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 20) + `1` + strings.Repeat(`}`, 20)    // the body and 19 nested maps
	tooDeep := strings.Repeat(`{"a":`, 21) + `1` + strings.Repeat(`}`, 21) // one more
	tests := []struct {
		name    string
		body    string
		want    map[string]any
		wantErr string
	}{
		{"empty object", `{}`, map[string]any{}, ""},
		{"ints and floats", `{"i":42,"neg":-1,"f":1.5,"e":2e2,"max":9223372036854775807,"over":9223372036854775808}`,
			map[string]any{"i": int64(42), "neg": int64(-1), "f": 1.5, "e": float64(200), "max": int64(9223372036854775807), "over": 9.223372036854776e18}, ""},
		{"strings stay strings", `{"t":"2026-01-01T00:00:00Z"}`, map[string]any{"t": "2026-01-01T00:00:00Z"}, ""},
		{"server timestamp", `{"c":{"$time":"now"}}`, map[string]any{"c": firestore.ServerTimestamp}, ""},
		{"nested server timestamp", `{"m":{"c":{"$time":"now"}}}`, map[string]any{"m": map[string]any{"c": firestore.ServerTimestamp}}, ""},
		{"timestamp", `{"c":{"$time":"2026-01-01T00:00:00.5+01:00"}}`,
			map[string]any{"c": time.Date(2026, 1, 1, 0, 0, 0, 5e8, time.FixedZone("", 3600))}, ""},
		{"time in array", `{"a":[{"$time":"2026-01-01T00:00:00Z"}]}`, map[string]any{"a": []any{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}, ""},
		{"19 nested maps plus the body", deep, nil, ""},
		{"too deep", tooDeep, nil, "deeper than 20"},
		{"deep arrays", `{"a":[{"b":[{"c":[1]}]}]}`, map[string]any{"a": []any{map[string]any{"b": []any{map[string]any{"c": []any{int64(1)}}}}}}, ""},
		{"$time with other keys", `{"c":{"$time":"now","x":1}}`, nil, "no other keys"},
		{"$time not a string", `{"c":{"$time":1}}`, nil, "$time must be"},
		{"body is a $time", `{"$time":"now"}`, nil, "not a $time value"},
		{"empty field name", `{"":1}`, nil, "empty field name"},
		{"nested empty field name", `{"m":{"":1}}`, nil, "empty field name"},
		{"reserved field", `{"__name__":1}`, nil, "reserved"},
		{"array in array", `{"a":[1,[2]]}`, nil, "arrays cannot directly contain arrays"},
		{"server time in array", `{"a":[{"$time":"now"}]}`, nil, "inside an array"},
		{"null body", `null`, nil, "JSON object"},
		{"string body", `"x"`, nil, "JSON object"},
		{"empty body", ``, nil, "not JSON"},
		{"trailing garbage", `{}x`, nil, "trailing"},
		{"overflowing float", `{"f":-1e400}`, nil, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeDocBody(strings.NewReader(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestSplitPath(t *testing.T) {
	seg1500 := strings.Repeat("s", 1500)
	segs100 := strings.TrimSuffix(strings.Repeat("a/", 100), "/")
	tests := []struct {
		path    string
		want    int
		wantErr string
	}{
		{"tasks", 1, ""},
		{"projects/p1/tasks/t9", 4, ""},
		{"tasks/" + seg1500, 2, ""},
		{"tasks/" + seg1500 + "s", 0, "longer than 1500"},
		{segs100, 100, ""},
		{segs100 + "/a", 0, "more than 100"},
		{"tasks/ünïcødé", 2, ""},
		{"tasks/__", 2, ""},
		{"tasks/____", 2, ""},
		{"tasks/__a__", 0, "reserved"},
		{"", 0, "empty path"},
		{"/tasks", 0, "empty segment"},
		{"tasks/", 0, "empty segment"},
		{"tasks/.", 0, "not allowed"},
		{"../tasks", 0, "not allowed"},
		{"tasks/a\x00b", 0, "control"},
		{"tasks/a\x7fb", 0, "control"},
		{"tasks/\xff", 0, "UTF-8"},
	}
	for _, tt := range tests {
		segs, err := splitPath(tt.path)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("splitPath(%.40q) err = %v, want %q", tt.path, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(segs) != tt.want {
			t.Errorf("splitPath(%.40q) = %d segments, %v; want %d", tt.path, len(segs), err, tt.want)
		}
	}
}

// FuzzDecodeDocBody checks that any body decodes to Firestore-storable
// values (int64, float64, string, bool, nil, time.Time, ServerTimestamp
// outside arrays, maps, arrays not directly nested) or is refused.
func FuzzDecodeDocBody(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1,"b":1.5,"c":"s","d":true,"e":null}`, `{"t":{"$time":"now"}}`,
		`{"t":{"$time":"2026-01-01T00:00:00Z"}}`, `{"a":[1,{"b":[2]}]}`, `{"a":[[1]]}`,
		`{"n":1e999}`, `{"n":-0}`, `{"":1}`, `[]`, `{} {}`, `{"a":{"$time":"now","b":1}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		m, err := decodeDocBody(strings.NewReader(body))
		if err != nil {
			return
		}
		checkStorable(t, m, 1, false, false)
	})
}

func checkStorable(t *testing.T, v any, depth int, inArray, underArray bool) {
	t.Helper()
	if depth > maxValueDepth+1 {
		t.Fatalf("depth %d", depth)
	}
	switch x := v.(type) {
	case nil, bool, string, int64, float64, time.Time:
	case map[string]any:
		for k, e := range x {
			if k == "" {
				t.Fatal("empty key accepted")
			}
			checkStorable(t, e, depth+1, false, underArray)
		}
	case []any:
		if inArray {
			t.Fatal("array in array accepted")
		}
		for _, e := range x {
			checkStorable(t, e, depth+1, true, true)
		}
	default:
		if v == firestore.ServerTimestamp {
			if underArray {
				t.Fatal("server timestamp under an array accepted")
			}
			return
		}
		t.Fatalf("unexpected value %#v", v)
	}
}

// FuzzSplitPath checks that an accepted path has only valid segments.
func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{"tasks", "projects/p1/tasks/t1", "a//b", "../x", "__x__", "a/\x00", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		segs, err := splitPath(p)
		if err != nil {
			return
		}
		if strings.Join(segs, "/") != p || len(segs) > maxPathSegments {
			t.Fatalf("segments %q of %q", segs, p)
		}
		for _, s := range segs {
			if s == "" || s == "." || s == ".." || len(s) > maxSegmentBytes {
				t.Fatalf("accepted segment %q", s)
			}
		}
	})
}
