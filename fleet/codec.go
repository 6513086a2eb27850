package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

// Limits on what a peer may send us (a corrupt or hostile message is refused
// with an error, never applied in part).
const (
	maxBatchChanges = 1 << 20
	maxStateDocs    = 1 << 20
)

// batch is one published change batch of a Feed: the visible changes of one
// `changes` message, with the Feed's epoch and the seq they bring it to.
// Document data travels as the JSON the owner encoded once.
type batch struct {
	Epoch    string        `json:"e"`
	Seq      uint64        `json:"s"`
	ReadTime string        `json:"t,omitempty"` // RFC 3339 nano; "" for none
	At       int64         `json:"at"`          // owner's publish time, Unix ns (stream lag)
	Changes  []batchChange `json:"c"`
}

type batchChange struct {
	Kind       string          `json:"k"` // wire.KindAdded, KindModified, KindRemoved
	ID         string          `json:"id"`
	Path       string          `json:"p"`
	Data       json.RawMessage `json:"d,omitempty"`
	UpdateTime string          `json:"u,omitempty"`
}

// stateReply answers a state request: the owner's visible set (snapshot
// order), seq and replay history, or Err.
type stateReply struct {
	Epoch   string         `json:"e"`
	Seq     uint64         `json:"s"`
	Docs    []batchChange  `json:"d"` // Kind unused
	History []historyEntry `json:"h"`
	Err     string         `json:"err,omitempty"`
}

type historyEntry struct {
	Seq     uint64          `json:"s"`
	At      int64           `json:"at"`
	Changes []historyChange `json:"c"`
}

type historyChange struct {
	Kind string `json:"k"`
	ID   string `json:"id"`
	Path string `json:"p"`
}

// encodeBatch encodes the changes of one `changes` message.
func encodeBatch(epoch string, seq uint64, readTime time.Time, at time.Time, changes []wire.Change) []byte {
	b := batch{Epoch: epoch, Seq: seq, At: at.UnixNano(), Changes: make([]batchChange, len(changes))}
	if !readTime.IsZero() {
		b.ReadTime = readTime.UTC().Format(time.RFC3339Nano)
	}
	for i, c := range changes {
		bc := batchChange{Kind: c.Kind, ID: c.ID, Path: c.Path, UpdateTime: c.UpdateTime}
		if c.Kind != wire.KindRemoved {
			bc.Data = json.RawMessage(c.Data)
			if len(bc.Data) == 0 {
				bc.Data = json.RawMessage("{}")
			}
		}
		b.Changes[i] = bc
	}
	out, _ := json.Marshal(&b) // plain strings and raw JSON the Feed encoded: cannot fail
	return out
}

// errBadMessage wraps every decoding failure of a peer's message.
var errBadMessage = errors.New("fleet: malformed message")

// decodeBatch decodes and validates a published batch into a Snapshot's
// changes (Seq set), or fails without side effects.
func decodeBatch(data []byte) (*batch, *subscriptions.Snapshot, error) {
	var b batch
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, nil, fmt.Errorf("%w: batch: %v", errBadMessage, err)
	}
	if b.Epoch == "" || b.Seq == 0 {
		return nil, nil, fmt.Errorf("%w: batch without epoch or seq", errBadMessage)
	}
	if len(b.Changes) == 0 || len(b.Changes) > maxBatchChanges {
		return nil, nil, fmt.Errorf("%w: batch with %d changes", errBadMessage, len(b.Changes))
	}
	s := &subscriptions.Snapshot{Seq: b.Seq, Changes: make([]subscriptions.Change, len(b.Changes))}
	if b.ReadTime != "" {
		t, err := time.Parse(time.RFC3339Nano, b.ReadTime)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: batch read time: %v", errBadMessage, err)
		}
		s.ReadTime = t
	}
	for i, c := range b.Changes {
		var kind subscriptions.ChangeKind
		switch c.Kind {
		case wire.KindAdded:
			kind = subscriptions.Added
		case wire.KindModified:
			kind = subscriptions.Modified
		case wire.KindRemoved:
			kind = subscriptions.Removed
		default:
			return nil, nil, fmt.Errorf("%w: change kind %q", errBadMessage, c.Kind)
		}
		d, err := decodeDoc(&c, kind != subscriptions.Removed)
		if err != nil {
			return nil, nil, err
		}
		s.Changes[i] = subscriptions.Change{Kind: kind, Doc: d}
	}
	return &b, s, nil
}

// decodeDoc turns a transported document into a subscriptions.Document with
// plain JSON values (integers as int64, other numbers as float64).
func decodeDoc(c *batchChange, withData bool) (subscriptions.Document, error) {
	d := subscriptions.Document{ID: c.ID, Path: c.Path}
	if c.ID == "" || c.Path == "" {
		return d, fmt.Errorf("%w: document without id or path", errBadMessage)
	}
	if c.UpdateTime != "" {
		t, err := time.Parse(time.RFC3339Nano, c.UpdateTime)
		if err != nil {
			return d, fmt.Errorf("%w: update time: %v", errBadMessage, err)
		}
		d.UpdateTime = t
	}
	if !withData {
		return d, nil
	}
	dec := json.NewDecoder(bytes.NewReader(c.Data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return d, fmt.Errorf("%w: document data: %v", errBadMessage, err)
	}
	if dec.More() {
		return d, fmt.Errorf("%w: document data: trailing data", errBadMessage)
	}
	v, err := plainNumbers(m)
	if err != nil {
		return d, err
	}
	d.Data, _ = v.(map[string]any)
	return d, nil
}

// plainNumbers replaces json.Number by int64 (integers that fit) or float64.
func plainNumbers(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		f, err := x.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: number %q", errBadMessage, string(x))
		}
		return f, nil
	case map[string]any:
		for k, e := range x {
			n, err := plainNumbers(e)
			if err != nil {
				return nil, err
			}
			x[k] = n
		}
		return x, nil
	case []any:
		for i, e := range x {
			n, err := plainNumbers(e)
			if err != nil {
				return nil, err
			}
			x[i] = n
		}
		return x, nil
	}
	return v, nil
}

// encodeState encodes a Feed's state for a state request.
func encodeState(epoch string, st subscriptions.FeedState) []byte {
	r := stateReply{Epoch: epoch, Seq: st.Seq, Docs: make([]batchChange, len(st.Docs)), History: make([]historyEntry, len(st.History))}
	for i, d := range st.Docs {
		data := json.RawMessage(d.Data)
		if len(data) == 0 {
			data = json.RawMessage("{}")
		}
		r.Docs[i] = batchChange{ID: d.ID, Path: d.Path, Data: data, UpdateTime: d.UpdateTime}
	}
	for i, h := range st.History {
		e := historyEntry{Seq: h.Seq, At: h.At.UnixNano(), Changes: make([]historyChange, len(h.Changes))}
		for j, c := range h.Changes {
			e.Changes[j] = historyChange{Kind: kindName(c.Kind), ID: c.ID, Path: c.Path}
		}
		r.History[i] = e
	}
	out, _ := json.Marshal(&r)
	return out
}

func encodeStateError(msg string) []byte {
	out, _ := json.Marshal(&stateReply{Err: msg})
	return out
}

func kindName(k subscriptions.ChangeKind) string {
	switch k {
	case subscriptions.Added:
		return wire.KindAdded
	case subscriptions.Modified:
		return wire.KindModified
	}
	return wire.KindRemoved
}

// errNoState is a state reply that carries an error (the peer is not, or
// no longer, the owner, or has no state yet).
var errNoState = errors.New("fleet: the owner has no state to give")

// decodeState decodes a state reply into a Reset snapshot (Seq and History
// set) and the Feed's epoch.
func decodeState(data []byte) (string, *subscriptions.Snapshot, error) {
	var r stateReply
	if err := json.Unmarshal(data, &r); err != nil {
		return "", nil, fmt.Errorf("%w: state: %v", errBadMessage, err)
	}
	if r.Err != "" {
		return "", nil, fmt.Errorf("%w: %s", errNoState, r.Err)
	}
	if r.Epoch == "" || len(r.Docs) > maxStateDocs {
		return "", nil, fmt.Errorf("%w: state without epoch or with %d documents", errBadMessage, len(r.Docs))
	}
	s := &subscriptions.Snapshot{Reset: true, Seq: r.Seq, Docs: make([]subscriptions.Document, len(r.Docs))}
	for i := range r.Docs {
		d, err := decodeDoc(&r.Docs[i], true)
		if err != nil {
			return "", nil, err
		}
		s.Docs[i] = d
	}
	last := uint64(0)
	for _, h := range r.History {
		if h.Seq <= last || h.Seq > r.Seq {
			return "", nil, fmt.Errorf("%w: history seq %d out of order", errBadMessage, h.Seq)
		}
		last = h.Seq
		e := subscriptions.HistoryEntry{Seq: h.Seq, At: time.Unix(0, h.At), Changes: make([]subscriptions.HistoryChange, len(h.Changes))}
		for j, c := range h.Changes {
			k := subscriptions.Removed
			switch c.Kind {
			case wire.KindAdded:
				k = subscriptions.Added
			case wire.KindModified:
				k = subscriptions.Modified
			case wire.KindRemoved:
			default:
				return "", nil, fmt.Errorf("%w: history kind %q", errBadMessage, c.Kind)
			}
			if c.ID == "" {
				return "", nil, fmt.Errorf("%w: history change without id", errBadMessage)
			}
			e.Changes[j] = subscriptions.HistoryChange{Kind: k, ID: c.ID, Path: c.Path}
		}
		s.History = append(s.History, e)
	}
	return r.Epoch, s, nil
}
