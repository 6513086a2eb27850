package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxIDLength bounds subscription and ping ids.
const MaxIDLength = 128

// MaxDocPathBytes bounds a document path, as Firestore bounds a document
// name.
const MaxDocPathBytes = 1500

// SplitDocPath splits a document path ("tasks/t1", "projects/p1/tasks/t9")
// into its collection path and document id. It refuses (with a message
// safe for the client) an empty path or segment, a leading or trailing /,
// an odd number of segments and a path over MaxDocPathBytes; the policy
// and the planner check the segments themselves.
func SplitDocPath(p string) (collection, id string, err error) {
	switch {
	case p == "":
		return "", "", errors.New("empty document path")
	case len(p) > MaxDocPathBytes:
		return "", "", fmt.Errorf("document path longer than %d bytes", MaxDocPathBytes)
	case strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/"):
		return "", "", errors.New("document path may not start or end with /")
	case strings.Contains(p, "//"):
		return "", "", errors.New("document path has an empty segment")
	case strings.Count(p, "/")%2 == 0:
		return "", "", errors.New("not a document path: it needs an even number of segments (collection/doc)")
	}
	i := strings.LastIndexByte(p, '/')
	return p[:i], p[i+1:], nil
}

// DecodeError is a client frame that cannot be understood; its message is
// safe to send back to the client.
type DecodeError struct{ Msg string }

func (e *DecodeError) Error() string { return e.Msg }

// DecodeClient decodes and checks one client frame. It returns a
// *DecodeError for anything malformed: not a JSON object, an unknown type,
// a missing or over-long id, an unknown operator, trailing data. Unknown
// fields are ignored for forward compatibility. A `write` is decoded with
// DecodeWrite into m.Write; a malformed one returns its *WriteDecodeError
// (which names the operation) with m.ID set.
func DecodeClient(b []byte) (ClientMessage, error) {
	var m ClientMessage
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return m, &DecodeError{"frame must be one JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return ClientMessage{}, &DecodeError{"invalid JSON: " + cleanJSONErr(err)}
	}
	if dec.More() {
		return ClientMessage{}, &DecodeError{"trailing data after the JSON object"}
	}
	if !utf8.Valid(b) {
		return ClientMessage{}, &DecodeError{"frame is not valid UTF-8"}
	}
	if len(m.ID) > MaxIDLength {
		return m, &DecodeError{fmt.Sprintf("id longer than %d bytes", MaxIDLength)}
	}
	switch m.Type {
	case TypeAuth:
		if m.Token == "" {
			return m, &DecodeError{"auth needs a token"}
		}
	case TypeSubscribe:
		if m.ID == "" {
			return m, &DecodeError{"subscribe needs an id"}
		}
		switch {
		case m.Collection != "" && m.Doc != "":
			return m, &DecodeError{"subscribe takes a collection or a doc, not both"}
		case m.Doc != "":
			if _, _, err := SplitDocPath(m.Doc); err != nil {
				return m, &DecodeError{"doc: " + err.Error()}
			}
			if len(m.Where) > 0 || len(m.OrderBy) > 0 || m.Limit != 0 {
				return m, &DecodeError{"a doc subscription takes no where, order_by or limit"}
			}
		case m.Collection == "":
			return m, &DecodeError{"subscribe needs a collection or a doc"}
		}
		for i := range m.Where {
			f := &m.Where[i]
			if f.Field == "" {
				return m, &DecodeError{fmt.Sprintf("where[%d]: missing field", i)}
			}
			if !validOp(f.Op) {
				return m, &DecodeError{fmt.Sprintf("where[%d]: unknown op %q", i, f.Op)}
			}
			v, err := normalizeNumbers(f.Value)
			if err != nil {
				return m, &DecodeError{fmt.Sprintf("where[%d]: %v", i, err)}
			}
			f.Value = v
		}
		for i, o := range m.OrderBy {
			if o.Field == "" {
				return m, &DecodeError{fmt.Sprintf("order_by[%d]: missing field", i)}
			}
			if o.Direction != "" && o.Direction != "asc" && o.Direction != "desc" {
				return m, &DecodeError{fmt.Sprintf("order_by[%d]: direction must be asc or desc", i)}
			}
		}
		if m.Limit < 0 {
			return m, &DecodeError{"limit must not be negative"}
		}
		if m.Resume != nil && m.Resume.Epoch == "" {
			return m, &DecodeError{"resume needs an epoch"}
		}
	case TypeUnsubscribe:
		if m.ID == "" {
			return m, &DecodeError{"unsubscribe needs an id"}
		}
	case TypeWrite:
		if m.ID == "" {
			return m, &DecodeError{"write needs an id"}
		}
		w, err := DecodeWrite(b)
		if err != nil {
			return m, err
		}
		m.Write = &w
	case TypePing:
	case "":
		return m, &DecodeError{"missing type"}
	default:
		return m, &DecodeError{fmt.Sprintf("unknown type %q", truncate(m.Type, 32))}
	}
	return m, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func cleanJSONErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at offset %d", se.Error(), se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type.String())
	}
	return err.Error()
}

func validOp(op string) bool {
	for _, o := range Ops {
		if o == op {
			return true
		}
	}
	return false
}

// normalizeNumbers turns json.Number into int64 when integral, else float64,
// recursively, so filter values compare as Firestore compares them.
func normalizeNumbers(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return nil, fmt.Errorf("number %s out of range", x)
		}
		return f, nil
	case []any:
		for i := range x {
			n, err := normalizeNumbers(x[i])
			if err != nil {
				return nil, err
			}
			x[i] = n
		}
		return x, nil
	case map[string]any:
		return nil, errors.New("filter values may not be objects")
	default:
		return v, nil
	}
}

// Frame is an encoded server message bound to a subscription, split around
// the subscription id so that one encoding serves every subscriber: a
// subscriber's frame is Head + quoted sub id + Tail. Frames are immutable
// once built and safe to share between goroutines.
type Frame struct {
	Type string // message type, for metrics
	Head []byte // `{"type":"changes","sub":`
	Tail []byte // `,"seq":43,...}`
}

// Len is the frame's size for a quoted subscription id of n bytes.
func (f *Frame) Len(n int) int { return len(f.Head) + n + len(f.Tail) }

// AppendTo appends the whole frame for quotedSub to dst.
func (f *Frame) AppendTo(dst, quotedSub []byte) []byte {
	dst = append(dst, f.Head...)
	dst = append(dst, quotedSub...)
	return append(dst, f.Tail...)
}

var (
	headChanges      = []byte(`{"type":"changes","sub":`)
	headSnapshot     = []byte(`{"type":"snapshot","sub":`)
	headUnsubscribed = []byte(`{"type":"unsubscribed","sub":`)
)

// QuoteID returns the JSON string encoding of a subscription id.
func QuoteID(id string) []byte { return AppendString(nil, id) }

// ChangesFrame encodes a `changes` message once for all subscribers.
// readTime may be zero (catch-up), and then read_time is omitted.
func ChangesFrame(seq uint64, readTime time.Time, changes []Change) *Frame {
	t := make([]byte, 0, 64+changesSize(changes))
	t = append(t, `,"seq":`...)
	t = strconv.AppendUint(t, seq, 10)
	if !readTime.IsZero() {
		t = append(t, `,"read_time":"`...)
		t = readTime.UTC().AppendFormat(t, time.RFC3339Nano)
		t = append(t, '"')
	}
	t = append(t, `,"changes":[`...)
	for i := range changes {
		if i > 0 {
			t = append(t, ',')
		}
		t = AppendChange(t, &changes[i])
	}
	t = append(t, "]}"...)
	return &Frame{Type: TypeChanges, Head: headChanges, Tail: t}
}

// SnapshotFrame encodes one chunk of a snapshot.
func SnapshotFrame(seq uint64, docs []Doc, final bool) *Frame {
	n := 64
	for i := range docs {
		n += 64 + len(docs[i].Data) + len(docs[i].Path) + len(docs[i].ID)
	}
	t := make([]byte, 0, n)
	t = append(t, `,"seq":`...)
	t = strconv.AppendUint(t, seq, 10)
	t = append(t, `,"docs":[`...)
	for i := range docs {
		if i > 0 {
			t = append(t, ',')
		}
		t = AppendDoc(t, &docs[i])
	}
	t = append(t, `],"final":`...)
	t = strconv.AppendBool(t, final)
	t = append(t, '}')
	return &Frame{Type: TypeSnapshot, Head: headSnapshot, Tail: t}
}

// UnsubscribedFrame encodes an `unsubscribed` message.
func UnsubscribedFrame(reason, message string) *Frame {
	t := append([]byte(`,"reason":`), AppendString(nil, reason)...)
	if message != "" {
		t = append(t, `,"message":`...)
		t = AppendString(t, message)
	}
	t = append(t, '}')
	return &Frame{Type: TypeUnsubscribed, Head: headUnsubscribed, Tail: t}
}

func changesSize(cs []Change) int {
	n := 0
	for i := range cs {
		n += 80 + len(cs[i].Data) + len(cs[i].Path) + len(cs[i].ID)
	}
	return n
}

// AppendDoc appends a DOC object. d.Data must be valid JSON.
func AppendDoc(t []byte, d *Doc) []byte {
	t = append(t, `{"id":`...)
	t = AppendString(t, d.ID)
	t = append(t, `,"path":`...)
	t = AppendString(t, d.Path)
	t = append(t, `,"data":`...)
	if len(d.Data) == 0 {
		t = append(t, "{}"...)
	} else {
		t = append(t, d.Data...)
	}
	t = append(t, `,"update_time":`...)
	t = AppendString(t, d.UpdateTime)
	return append(t, '}')
}

// AppendChange appends one change object; a removed change carries no data.
func AppendChange(t []byte, c *Change) []byte {
	t = append(t, `{"kind":`...)
	t = AppendString(t, c.Kind)
	t = append(t, `,"id":`...)
	t = AppendString(t, c.ID)
	t = append(t, `,"path":`...)
	t = AppendString(t, c.Path)
	if c.Kind != KindRemoved {
		t = append(t, `,"data":`...)
		if len(c.Data) == 0 {
			t = append(t, "{}"...)
		} else {
			t = append(t, c.Data...)
		}
		if c.UpdateTime != "" {
			t = append(t, `,"update_time":`...)
			t = AppendString(t, c.UpdateTime)
		}
	}
	return append(t, '}')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaping as encoding/json does
// (minus HTML escaping). Invalid UTF-8 becomes U+FFFD.
func AppendString(t []byte, s string) []byte {
	t = append(t, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			t = append(t, s[start:i]...)
			switch c {
			case '"', '\\':
				t = append(t, '\\', c)
			case '\n':
				t = append(t, '\\', 'n')
			case '\r':
				t = append(t, '\\', 'r')
			case '\t':
				t = append(t, '\\', 't')
			default:
				t = append(t, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			t = append(t, s[start:i]...)
			t = append(t, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			t = append(t, s[start:i]...)
			t = append(t, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	t = append(t, s[start:]...)
	return append(t, '"')
}

var headSubscribed = []byte(`{"type":"subscribed","id":`)

// SubscribedFrame encodes a `subscribed` message; the subscription id is
// spliced in like every other subscription-bound frame.
func SubscribedFrame(epoch string, resumed bool) *Frame {
	t := append([]byte(`,"epoch":`), AppendString(nil, epoch)...)
	t = append(t, `,"resumed":`...)
	t = strconv.AppendBool(t, resumed)
	t = append(t, '}')
	return &Frame{Type: TypeSubscribed, Head: headSubscribed, Tail: t}
}

var finalTrue = []byte(`"final":true}`)

// FinalChunk reports whether f is the last chunk of a snapshot (or not a
// snapshot at all).
func (f *Frame) FinalChunk() bool {
	return f.Type != TypeSnapshot || bytes.HasSuffix(f.Tail, finalTrue)
}
