// Package revocation remembers revoked Clerk sessions, users, organization
// memberships and organizations for as long as a token issued before the
// revocation can still be accepted, and shares them between gateway
// instances through a Firestore collection (see Sync).
//
// A revocation has a kind, the ids it names and the time it was recorded
// (At). A token is revoked by it when the token's iat is not after At:
// tokens issued later (a new session, a re-added member) are unaffected.
// Entries are kept for Config.TTL after At — the longest accepted token
// lifetime plus the verifier's leeway, so that every token a revocation
// covers has expired before the revocation is forgotten — and the Store
// holds at most Config.MaxEntries of them (oldest evicted first, counted).
package revocation

import (
	"container/heap"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Kind says what a revocation names.
type Kind string

// Kinds of revocation. ID is the session id, the user id, the user id (with
// OrgID) or the org id respectively.
const (
	KindSession    Kind = "session"
	KindUser       Kind = "user"
	KindMembership Kind = "membership"
	KindOrg        Kind = "org"
)

// Kinds lists every Kind.
var Kinds = []Kind{KindSession, KindUser, KindMembership, KindOrg}

// MaxIDBytes bounds an id (Clerk ids are ~32 bytes).
const MaxIDBytes = 256

// Revocation is one revoked session, user, membership or org.
type Revocation struct {
	Kind  Kind
	ID    string    // session id, user id (user and membership) or org id
	OrgID string    // the org of a membership; empty for the other kinds
	At    time.Time // when it was recorded; tokens with iat <= At are refused
}

// ErrInvalid is the cause of every Validate error.
var ErrInvalid = errors.New("invalid revocation")

// Validate reports why r cannot be stored, or nil.
func (r Revocation) Validate() error {
	switch r.Kind {
	case KindSession, KindUser, KindOrg:
		if r.OrgID != "" {
			return fmt.Errorf("%w: %s revocation with an org id", ErrInvalid, r.Kind)
		}
	case KindMembership:
		if r.OrgID == "" {
			return fmt.Errorf("%w: membership revocation without an org id", ErrInvalid)
		}
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrInvalid, truncate(string(r.Kind)))
	}
	if r.ID == "" {
		return fmt.Errorf("%w: %s revocation without an id", ErrInvalid, r.Kind)
	}
	if len(r.ID) > MaxIDBytes || len(r.OrgID) > MaxIDBytes {
		return fmt.Errorf("%w: id longer than %d bytes", ErrInvalid, MaxIDBytes)
	}
	if r.At.IsZero() {
		return fmt.Errorf("%w: no time", ErrInvalid)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// Key identifies what r revokes: two revocations with the same Key are the
// same revocation at (possibly) different times.
func (r Revocation) Key() string {
	return string(r.Kind) + "\x1f" + r.ID + "\x1f" + r.OrgID
}

// Covers reports whether r revokes a token issued at iat (iat not after
// r.At).
func (r Revocation) Covers(iat time.Time) bool { return !iat.After(r.At) }

// Defaults of Config.
const (
	DefaultMaxEntries = 100_000
)

// Config configures NewStore.
type Config struct {
	// TTL is how long after its time a revocation is kept: the longest
	// accepted token lifetime plus the verifier's leeway. Required (> 0).
	TTL time.Duration
	// MaxEntries bounds the Store; when full, the entry that expires first
	// is evicted (and OnEvict called). 0 means DefaultMaxEntries.
	MaxEntries int
	// Clock is the time source of expiry; nil means time.Now.
	Clock func() time.Time
	// OnEvict, if set, is called (with no lock held) once per entry evicted
	// before its expiry because the Store was full (a metric counter).
	OnEvict func()
}

// Store is the set of live revocations. It is safe for concurrent use: mu
// guards entries and the heap; watchers is written only before use.
type Store struct {
	ttl     time.Duration
	max     int
	now     func() time.Time
	onEvict func()

	mu      sync.Mutex
	entries map[string]*item // by Key
	byExp   expHeap          // the same items, earliest expiry first

	watchMu  sync.RWMutex
	watchers []func(Revocation)
}

type item struct {
	r       Revocation
	expires time.Time
	idx     int // position in byExp
}

// NewStore validates cfg and returns an empty Store.
func NewStore(cfg Config) (*Store, error) {
	if cfg.TTL <= 0 {
		return nil, fmt.Errorf("failed to create revocation store: TTL %v must be positive", cfg.TTL)
	}
	if cfg.MaxEntries < 0 {
		return nil, fmt.Errorf("failed to create revocation store: negative MaxEntries %d", cfg.MaxEntries)
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.OnEvict == nil {
		cfg.OnEvict = func() {}
	}
	return &Store{ttl: cfg.TTL, max: cfg.MaxEntries, now: cfg.Clock, onEvict: cfg.OnEvict, entries: make(map[string]*item)}, nil
}

// TTL is how long a revocation is kept after its time.
func (s *Store) TTL() time.Duration { return s.ttl }

// Watch registers fn, called (with no Store lock held, on the Add caller's
// goroutine) after every Add that changed the Store, with the revocation
// as stored. fn must be safe for concurrent use.
func (s *Store) Watch(fn func(Revocation)) {
	s.watchMu.Lock()
	s.watchers = append(s.watchers, fn)
	s.watchMu.Unlock()
}

// Add records r (its time truncated to the microsecond, as Firestore
// stores it). It reports whether the Store changed: false when r is
// invalid, already expired, or not later than the revocation already held
// for its Key (the later time wins). Watchers run before Add returns.
func (s *Store) Add(r Revocation) bool {
	if r.Validate() != nil {
		return false
	}
	r.At = r.At.UTC().Truncate(time.Microsecond) // Firestore's precision: local and shared copies agree
	now := s.now()
	expires := r.At.Add(s.ttl)
	if !expires.After(now) {
		return false
	}
	evicted := 0
	s.mu.Lock()
	s.expireLocked(now)
	k := r.Key()
	if it := s.entries[k]; it != nil {
		if !r.At.After(it.r.At) {
			s.mu.Unlock()
			return false
		}
		it.r, it.expires = r, expires
		heap.Fix(&s.byExp, it.idx)
	} else {
		for len(s.entries) >= s.max {
			old := heap.Pop(&s.byExp).(*item)
			delete(s.entries, old.r.Key())
			evicted++
		}
		it := &item{r: r, expires: expires}
		s.entries[k] = it
		heap.Push(&s.byExp, it)
	}
	s.mu.Unlock()
	for range evicted {
		s.onEvict()
	}
	s.watchMu.RLock()
	ws := s.watchers
	s.watchMu.RUnlock()
	for _, fn := range ws {
		fn(r)
	}
	return true
}

// expireLocked drops the entries whose expiry has passed. mu is held.
func (s *Store) expireLocked(now time.Time) {
	for len(s.byExp) > 0 && !s.byExp[0].expires.After(now) {
		it := heap.Pop(&s.byExp).(*item)
		delete(s.entries, it.r.Key())
	}
}

// lookup returns the live revocation for k.
func (s *Store) lookup(k string, now time.Time) (Revocation, bool) {
	it := s.entries[k]
	if it == nil || !it.expires.After(now) {
		return Revocation{}, false
	}
	return it.r, true
}

// Session reports the revocation, if any, that refuses a token of userID's
// session sessionID issued at iat: a revoked session or a deleted user.
func (s *Store) Session(userID, sessionID string, iat time.Time) (Revocation, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if sessionID != "" {
		if r, ok := s.lookup(Revocation{Kind: KindSession, ID: sessionID}.Key(), now); ok && r.Covers(iat) {
			return r, true
		}
	}
	if r, ok := s.lookup(Revocation{Kind: KindUser, ID: userID}.Key(), now); ok && r.Covers(iat) {
		return r, true
	}
	return Revocation{}, false
}

// Org reports the revocation, if any, that refuses userID's membership of
// orgID claimed by a token issued at iat: a deleted membership or org.
func (s *Store) Org(userID, orgID string, iat time.Time) (Revocation, bool) {
	if orgID == "" {
		return Revocation{}, false
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.lookup(Revocation{Kind: KindMembership, ID: userID, OrgID: orgID}.Key(), now); ok && r.Covers(iat) {
		return r, true
	}
	if r, ok := s.lookup(Revocation{Kind: KindOrg, ID: orgID}.Key(), now); ok && r.Covers(iat) {
		return r, true
	}
	return Revocation{}, false
}

// Len is the number of entries held (expired ones not yet dropped
// included until the next Add or Sweep).
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Sweep drops expired entries now (Add also does it).
func (s *Store) Sweep() {
	s.mu.Lock()
	s.expireLocked(s.now())
	s.mu.Unlock()
}

// expHeap orders items by expiry (earliest first).
type expHeap []*item

func (h expHeap) Len() int           { return len(h) }
func (h expHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *expHeap) Push(x any) {
	it := x.(*item)
	it.idx = len(*h)
	*h = append(*h, it)
}
func (h *expHeap) Pop() any {
	old := *h
	n := len(old)
	it := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	it.idx = -1
	return it
}
