package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// secretPrefix is the prefix of every Svix (and so Clerk) endpoint signing
// secret; the HMAC key is the standard base64 decoding of what follows it.
const secretPrefix = "whsec_"

// signatureVersion is the only Svix signature scheme this package knows:
// "v1,<base64 HMAC-SHA256>". Entries with other versions are skipped.
const signatureVersion = "v1"

// decodeSecret turns a "whsec_<base64>" secret into its HMAC key.
func decodeSecret(secret string) ([]byte, error) {
	rest, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return nil, fmt.Errorf("webhook secret must start with %q", secretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("webhook secret is not valid base64 after %q: %w", secretPrefix, err)
	}
	if len(key) == 0 {
		return nil, errors.New("webhook secret is empty after " + strconv.Quote(secretPrefix))
	}
	return key, nil
}

// mac computes the Svix v1 HMAC-SHA256 over "${msgID}.${timestamp}.${body}",
// timestamp being the raw svix-timestamp header value (decimal unix seconds).
func mac(key []byte, msgID, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msgID))
	h.Write([]byte{'.'})
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Sign returns an svix-signature header value ("v1,<base64>") for a message
// with id msgID, sent at ts (truncated to unix seconds, as the svix-timestamp
// header carries it) with the given body, signed with secret ("whsec_...").
// It exists for tests and tools; the header to send with it is
// svix-timestamp = strconv.FormatInt(ts.Unix(), 10).
func Sign(secret, msgID string, ts time.Time, body []byte) (string, error) {
	key, err := decodeSecret(secret)
	if err != nil {
		return "", fmt.Errorf("failed to sign webhook: %w", err)
	}
	sum := mac(key, msgID, strconv.FormatInt(ts.Unix(), 10), body)
	return signatureVersion + "," + base64.StdEncoding.EncodeToString(sum), nil
}

// validSignature reports whether any "v1,<base64>" entry of the
// space-separated signature header equals the expected MAC. Every entry is
// compared in constant time (hmac.Equal); entries of other versions and
// undecodable entries are skipped.
func validSignature(expected []byte, header string) bool {
	ok := false
	for entry := range strings.FieldsSeq(header) {
		version, sig, found := strings.Cut(entry, ",")
		if !found || version != signatureVersion {
			continue
		}
		var dst [sha256.Size + 2]byte
		if base64.StdEncoding.DecodedLen(len(sig)) > len(dst) {
			continue // cannot be a SHA-256 MAC; do not decode arbitrary sizes
		}
		n, err := strictB64.Decode(dst[:], []byte(sig))
		if err != nil || n != sha256.Size {
			continue
		}
		if hmac.Equal(dst[:n], expected) {
			ok = true // keep going: the time taken does not reveal which entry matched
		}
	}
	return ok
}

// seenIDs remembers recently accepted message ids so that a repeated
// delivery (Svix's retry of a delivery whose answer it missed, or a replay of
// a captured request) is not acted on twice while its timestamp is still
// inside the tolerance window. It holds at most cap ids; when full the
// oldest-inserted id is forgotten. An id is also forgotten once its expiry
// passes (after that, the timestamp check rejects a replay of it anyway).
// Safe for concurrent use: mu guards every field.
type seenIDs struct {
	mu      sync.Mutex
	entries map[string]seenEntry // id -> state
	ring    []string             // insertion order, ring[head] oldest
	head    int
	n       int
}

type seenEntry struct {
	expires time.Time // when the stale check takes over
	done    bool      // handled successfully (false: being handled)
}

// States begin reports.
const (
	seenNew        = iota // not seen: the caller handles it, then calls finish or forget
	seenInProgress        // another request is handling it now
	seenDone              // handled successfully before
)

func newSeenIDs(capacity int) *seenIDs {
	return &seenIDs{
		entries: make(map[string]seenEntry, capacity),
		ring:    make([]string, capacity),
	}
}

// begin records id as being handled, with its expiry, unless it is already
// known, and reports its state.
func (s *seenIDs) begin(id string, expiry, now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Opportunistically drop expired ids from the front.
	for s.n > 0 {
		oldest := s.ring[s.head]
		if e, ok := s.entries[oldest]; ok && !now.After(e.expires) {
			break
		}
		s.popOldest()
	}
	if e, ok := s.entries[id]; ok && !now.After(e.expires) {
		if e.done {
			return seenDone
		}
		return seenInProgress
	}
	if s.n == len(s.ring) {
		s.popOldest()
	}
	s.ring[(s.head+s.n)%len(s.ring)] = id
	s.n++
	s.entries[id] = seenEntry{expires: expiry}
	return seenNew
}

// finish marks id as handled successfully.
func (s *seenIDs) finish(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[id]; ok {
		e.done = true
		s.entries[id] = e
	}
}

// forget drops id (its handling failed: a retry is handled afresh). Its
// ring slot stays until it reaches the front.
func (s *seenIDs) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, id)
}

// popOldest forgets the oldest-inserted id. Callers hold mu and s.n > 0.
func (s *seenIDs) popOldest() {
	id := s.ring[s.head]
	s.ring[s.head] = ""
	s.head = (s.head + 1) % len(s.ring)
	s.n--
	delete(s.entries, id)
}

// len returns how many ids are remembered (for tests).
func (s *seenIDs) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// strictB64 accepts only the canonical encoding, as Svix's own libraries do
// (they compare encoded strings).
var strictB64 = base64.StdEncoding.Strict()
