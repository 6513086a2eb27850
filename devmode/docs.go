package devmode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits of /dev/docs paths and bodies (Firestore's own limits where it
// has them).
const (
	maxPathSegments = 100  // collection/doc nesting
	maxSegmentBytes = 1500 // document id limit
	maxValueDepth   = 20   // nested maps and arrays
)

// timeKey marks a special value in a /dev/docs body: {"$time":"now"} is
// firestore.ServerTimestamp, {"$time":"<RFC 3339>"} a timestamp.
const timeKey = "$time"

// docResponse is the JSON of a successful /dev/docs request.
type docResponse struct {
	ID         string `json:"id"`
	Path       string `json:"path"`
	UpdateTime string `json:"update_time,omitempty"`
}

// splitPath validates a database-relative path ("tasks",
// "projects/p1/tasks/t9") and returns its segments: 1..100 segments, each
// 1..1500 bytes of valid UTF-8, not "." or "..", not of the reserved form
// __*__, and no control characters.
func splitPath(p string) ([]string, error) {
	if p == "" {
		return nil, errors.New("empty path")
	}
	segs := strings.Split(p, "/")
	if len(segs) > maxPathSegments {
		return nil, fmt.Errorf("path has more than %d segments", maxPathSegments)
	}
	for _, s := range segs {
		switch {
		case s == "":
			return nil, errors.New("path has an empty segment")
		case s == "." || s == "..":
			return nil, fmt.Errorf("path segment %q is not allowed", s)
		case len(s) > maxSegmentBytes:
			return nil, fmt.Errorf("path segment longer than %d bytes", maxSegmentBytes)
		case !utf8.ValidString(s):
			return nil, errors.New("path is not valid UTF-8")
		case len(s) > 4 && strings.HasPrefix(s, "__") && strings.HasSuffix(s, "__"):
			return nil, fmt.Errorf("path segment %q is reserved by Firestore", s)
		}
		for _, r := range s {
			if r < 0x20 || r == 0x7f {
				return nil, errors.New("path has a control character")
			}
		}
	}
	return segs, nil
}

// decodeDocBody reads one JSON object (and nothing after it) and converts
// it to Firestore values: integral numbers become int64 (others float64;
// out-of-range numbers are an error), strings stay strings (RFC 3339
// strings are NOT converted), {"$time":"now"} becomes
// firestore.ServerTimestamp (not allowed inside arrays), {"$time":"<RFC
// 3339>"} a time.Time. Field names must be non-empty and not of the
// reserved form __*__; arrays cannot directly hold arrays; nesting is at
// most 20 deep. The caller bounds the reader's size.
func decodeDocBody(r io.Reader) (map[string]any, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("body is not JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("more than one JSON value")
		}
		return nil, fmt.Errorf("body has trailing data: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("body must be a JSON object")
	}
	out, err := convertMap(m, 1, false)
	if err != nil {
		return nil, err
	}
	doc, ok := out.(map[string]any)
	if !ok {
		return nil, errors.New("body must be a JSON object, not a $time value")
	}
	return doc, nil
}

// convertMap converts a JSON object; it returns a special value for a
// $time object, else a map[string]any. underArray says whether an array
// encloses it (at any depth), where a server timestamp is not allowed.
func convertMap(m map[string]any, depth int, underArray bool) (any, error) {
	if depth > maxValueDepth {
		return nil, fmt.Errorf("values nest deeper than %d levels", maxValueDepth)
	}
	if t, ok := m[timeKey]; ok {
		if len(m) != 1 {
			return nil, errors.New(`a {"$time": ...} object must have no other keys`)
		}
		s, ok := t.(string)
		if !ok {
			return nil, errors.New(`$time must be "now" or an RFC 3339 string`)
		}
		if s == "now" {
			if underArray {
				return nil, errors.New(`{"$time":"now"} cannot be inside an array`)
			}
			return firestore.ServerTimestamp, nil
		}
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf(`$time must be "now" or an RFC 3339 string: %q`, s)
		}
		return ts, nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k == "" {
			return nil, errors.New("empty field name")
		}
		if len(k) > 4 && strings.HasPrefix(k, "__") && strings.HasSuffix(k, "__") {
			return nil, fmt.Errorf("field name %q is reserved by Firestore", k)
		}
		c, err := convertValue(v, depth, false, underArray)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = c
	}
	return out, nil
}

// convertValue converts one JSON value found at depth; inArray says its
// parent is an array, underArray that some ancestor is.
func convertValue(v any, depth int, inArray, underArray bool) (any, error) {
	switch x := v.(type) {
	case nil, bool, string:
		return x, nil
	case json.Number:
		return convertNumber(string(x))
	case map[string]any:
		return convertMap(x, depth+1, underArray)
	case []any:
		if inArray {
			return nil, errors.New("arrays cannot directly contain arrays")
		}
		if depth+1 > maxValueDepth {
			return nil, fmt.Errorf("values nest deeper than %d levels", maxValueDepth)
		}
		out := make([]any, len(x))
		for i, e := range x {
			c, err := convertValue(e, depth+1, true, true)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = c
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unexpected JSON value %T", v)
	}
}

// convertNumber turns a JSON number into int64 when it is written as an
// integer that fits, else float64.
func convertNumber(s string) (any, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, fmt.Errorf("number %s is out of range", s)
	}
	return f, nil
}

// serveDocs answers POST/PUT/PATCH/DELETE /dev/docs/{path...}.
func (h *DevHandler) serveDocs(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	segs, err := splitPath(p)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad path: "+err.Error())
		return
	}
	isCollection := len(segs)%2 == 1
	if r.Method == http.MethodPost && !isCollection {
		writeError(w, http.StatusBadRequest, "POST takes a collection path (odd number of segments)")
		return
	}
	if r.Method != http.MethodPost && isCollection {
		writeError(w, http.StatusBadRequest, r.Method+" takes a document path (even number of segments)")
		return
	}
	var data map[string]any
	if r.Method != http.MethodDelete {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "the body must be application/json")
				return
			}
		} else {
			writeError(w, http.StatusUnsupportedMediaType, "the body must be application/json")
			return
		}
		data, err = decodeDocBody(http.MaxBytesReader(w, r.Body, MaxDocBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxDocBodyBytes))
				return
			}
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	c := h.cfg.Client
	var (
		ref  *firestore.DocumentRef
		res  *firestore.WriteResult
		code = http.StatusOK
	)
	if r.Method == http.MethodPost {
		if col := c.Collection(p); col != nil {
			ref = col.NewDoc()
		}
	} else {
		ref = c.Doc(p)
	}
	if ref == nil { // Collection/Doc return nil for a path of the wrong shape
		writeError(w, http.StatusBadRequest, "bad path")
		return
	}
	switch r.Method {
	case http.MethodPost:
		res, err = ref.Create(ctx, data)
		code = http.StatusCreated
	case http.MethodPut:
		res, err = ref.Set(ctx, data)
	case http.MethodPatch:
		res, err = ref.Set(ctx, data, firestore.MergeAll)
	case http.MethodDelete:
		res, err = ref.Delete(ctx)
	}
	if err != nil {
		code, msg := firestoreStatus(err)
		h.log.Warn("dev docs: write failed", "method", r.Method, "path", p, "err", err)
		writeError(w, code, msg)
		return
	}
	out := docResponse{ID: ref.ID, Path: p}
	if r.Method == http.MethodPost {
		out.Path = p + "/" + ref.ID
	}
	if res != nil && r.Method != http.MethodDelete {
		out.UpdateTime = res.UpdateTime.UTC().Format(time.RFC3339Nano)
	}
	writeJSON(w, code, out)
}

// firestoreStatus maps a Firestore error to an HTTP status and a message.
func firestoreStatus(err error) (int, string) {
	switch status.Code(err) {
	case codes.InvalidArgument:
		return http.StatusBadRequest, "firestore rejected the write: " + status.Convert(err).Message()
	case codes.NotFound:
		return http.StatusNotFound, "not found"
	case codes.AlreadyExists:
		return http.StatusConflict, "already exists"
	case codes.FailedPrecondition:
		return http.StatusConflict, "failed precondition: " + status.Convert(err).Message()
	case codes.DeadlineExceeded, codes.Unavailable, codes.Canceled:
		return http.StatusServiceUnavailable, "firestore is unavailable"
	default:
		return http.StatusInternalServerError, "firestore write failed"
	}
}
