package loadtest

import (
	"bytes"
	"math"
	"strconv"

	"github.com/firegate/firegate/wire"
)

// markField is the document field the writers put on every document they
// commit: "<w>:<sent_ns>", the write's sequence number within its Feed and
// the wall clock (Unix ns) just before the commit. Receivers find it in a
// frame without decoding the whole frame.
const markField = "ltm"

var (
	typePrefix = []byte(`{"type":"`)
	markKey    = []byte(`"` + markField + `":"`)
	seqKey     = []byte(`"seq":`)
	finalTrue  = []byte(`"final":true}`)
)

// frameType returns the type of a server frame as the gateway encodes it
// (`{"type":"<t>",...`), as one of the wire.Type* constants, or "" for
// anything else. It does not allocate.
func frameType(b []byte) string {
	if !bytes.HasPrefix(b, typePrefix) {
		return ""
	}
	rest := b[len(typePrefix):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return ""
	}
	switch string(rest[:end]) { // no allocation: compared in place
	case wire.TypeChanges:
		return wire.TypeChanges
	case wire.TypeSnapshot:
		return wire.TypeSnapshot
	case wire.TypeSubscribed:
		return wire.TypeSubscribed
	case wire.TypeWelcome:
		return wire.TypeWelcome
	case wire.TypeUnsubscribed:
		return wire.TypeUnsubscribed
	case wire.TypeError:
		return wire.TypeError
	case wire.TypeAuthExpiring:
		return wire.TypeAuthExpiring
	case wire.TypePong:
		return wire.TypePong
	}
	return ""
}

// mark is one writer mark found in a frame.
type mark struct {
	W      int64 // write sequence within the Feed
	SentNS int64 // commit-side wall clock, Unix ns
}

// appendMarks appends every well-formed writer mark in b to dst. A
// malformed mark (not `"ltm":"<digits>:<digits>"`) is skipped.
func appendMarks(dst []mark, b []byte) []mark {
	for {
		i := bytes.Index(b, markKey)
		if i < 0 {
			return dst
		}
		b = b[i+len(markKey):]
		w, n1 := parseDigits(b)
		if n1 == 0 || n1 >= len(b) || b[n1] != ':' {
			continue
		}
		t, n2 := parseDigits(b[n1+1:])
		if n2 == 0 || n1+1+n2 >= len(b) || b[n1+1+n2] != '"' {
			continue
		}
		dst = append(dst, mark{W: w, SentNS: t})
		b = b[n1+1+n2:]
	}
}

// parseDigits parses a run of decimal digits at the start of b as an
// int64; n is how many bytes it read (0: no digits, or the value does not
// fit in an int64).
func parseDigits(b []byte) (v int64, n int) {
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		d := int64(b[n] - '0')
		if v > (math.MaxInt64-d)/10 {
			return 0, 0
		}
		v = v*10 + d
		n++
	}
	return v, n
}

// frameSeq returns the first `"seq":<n>` of a frame.
func frameSeq(b []byte) (uint64, bool) {
	i := bytes.Index(b, seqKey)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(seqKey):]
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	v, err := strconv.ParseUint(string(b[:n]), 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// finalChunk reports whether a snapshot frame is the last chunk.
func finalChunk(b []byte) bool { return bytes.HasSuffix(bytes.TrimRight(b, " \r\n\t"), finalTrue) }

// formatMark builds a mark value.
func formatMark(w, sentNS int64) string {
	b := make([]byte, 0, 40)
	b = strconv.AppendInt(b, w, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, sentNS, 10)
	return string(b)
}
