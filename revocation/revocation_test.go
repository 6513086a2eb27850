package revocation

import (
	"errors"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestStore(t *testing.T, ttl time.Duration, max int) (*Store, *clock, *int) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	evicted := 0
	s, err := NewStore(Config{TTL: ttl, MaxEntries: max, Clock: c.now, OnEvict: func() { evicted++ }})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, &evicted
}

// TestStoreRefusesTokensIssuedNotAfterRevocation: each kind refuses exactly
// the tokens it names whose iat is not after the revocation.
func TestStoreRefusesTokensIssuedNotAfterRevocation(t *testing.T) {
	s, c, _ := newTestStore(t, time.Hour, 0)
	at := c.now()
	for _, r := range []Revocation{
		{Kind: KindSession, ID: "sess_1", At: at},
		{Kind: KindUser, ID: "user_gone", At: at},
		{Kind: KindMembership, ID: "user_m", OrgID: "org_a", At: at},
		{Kind: KindOrg, ID: "org_gone", At: at},
	} {
		if !s.Add(r) {
			t.Fatalf("Add(%+v) = false", r)
		}
	}
	before, same, after := at.Add(-time.Second), at, at.Add(time.Second)
	cases := []struct {
		name    string
		check   func(iat time.Time) bool
		iat     time.Time
		revoked bool
	}{
		{"session before", func(i time.Time) bool { _, ok := s.Session("user_x", "sess_1", i); return ok }, before, true},
		{"session same second", func(i time.Time) bool { _, ok := s.Session("user_x", "sess_1", i); return ok }, same, true},
		{"session issued after", func(i time.Time) bool { _, ok := s.Session("user_x", "sess_1", i); return ok }, after, false},
		{"other session", func(i time.Time) bool { _, ok := s.Session("user_x", "sess_2", i); return ok }, before, false},
		{"deleted user any session", func(i time.Time) bool { _, ok := s.Session("user_gone", "sess_9", i); return ok }, before, true},
		{"deleted user later token", func(i time.Time) bool { _, ok := s.Session("user_gone", "sess_9", i); return ok }, after, false},
		{"membership", func(i time.Time) bool { _, ok := s.Org("user_m", "org_a", i); return ok }, before, true},
		{"membership other org", func(i time.Time) bool { _, ok := s.Org("user_m", "org_b", i); return ok }, before, false},
		{"membership other user", func(i time.Time) bool { _, ok := s.Org("user_n", "org_a", i); return ok }, before, false},
		{"membership re-added later", func(i time.Time) bool { _, ok := s.Org("user_m", "org_a", i); return ok }, after, false},
		{"membership does not end the session", func(i time.Time) bool { _, ok := s.Session("user_m", "sess_m", i); return ok }, before, false},
		{"deleted org any user", func(i time.Time) bool { _, ok := s.Org("user_z", "org_gone", i); return ok }, before, true},
		{"no org", func(i time.Time) bool { _, ok := s.Org("user_m", "", i); return ok }, before, false},
	}
	for _, tc := range cases {
		if got := tc.check(tc.iat); got != tc.revoked {
			t.Errorf("%s: revoked = %v, want %v", tc.name, got, tc.revoked)
		}
	}
}

// TestStoreForgetsAfterTTL: an entry is kept TTL after its time, not a
// moment less, and forgotten after.
func TestStoreForgetsAfterTTL(t *testing.T) {
	s, c, evicted := newTestStore(t, time.Minute, 0)
	at := c.now()
	s.Add(Revocation{Kind: KindSession, ID: "s", At: at})
	c.advance(time.Minute - time.Nanosecond)
	if _, ok := s.Session("u", "s", at); !ok {
		t.Fatal("forgotten before its TTL")
	}
	c.advance(time.Nanosecond)
	if _, ok := s.Session("u", "s", at); ok {
		t.Fatal("still held at its TTL")
	}
	s.Sweep()
	if s.Len() != 0 {
		t.Fatalf("Len after sweep = %d, want 0", s.Len())
	}
	if *evicted != 0 {
		t.Fatalf("expiry counted as eviction: %d", *evicted)
	}
	if s.Add(Revocation{Kind: KindSession, ID: "old", At: at}) {
		t.Fatal("Add accepted an already expired revocation")
	}
}

// TestStoreCapEvictsOldestFirst: at the cap, the next entry evicts the one
// that expires first, and each eviction is counted.
func TestStoreCapEvictsOldestFirst(t *testing.T) {
	s, c, evicted := newTestStore(t, time.Hour, 3)
	t0 := c.now()
	for i, id := range []string{"b", "a", "c"} { // a is the oldest
		at := t0.Add(time.Duration(i) * time.Second)
		if id == "a" {
			at = t0.Add(-time.Second)
		}
		s.Add(Revocation{Kind: KindSession, ID: id, At: at})
	}
	if s.Len() != 3 || *evicted != 0 {
		t.Fatalf("at the cap: len %d evicted %d, want 3 and 0", s.Len(), *evicted)
	}
	s.Add(Revocation{Kind: KindSession, ID: "d", At: t0.Add(5 * time.Second)})
	if s.Len() != 3 || *evicted != 1 {
		t.Fatalf("past the cap: len %d evicted %d, want 3 and 1", s.Len(), *evicted)
	}
	if _, ok := s.Session("u", "a", t0.Add(-time.Hour)); ok {
		t.Fatal("the oldest entry survived the eviction")
	}
	for _, id := range []string{"b", "c", "d"} {
		if _, ok := s.Session("u", id, t0.Add(-time.Hour)); !ok {
			t.Fatalf("entry %s evicted instead of the oldest", id)
		}
	}
}

// TestStoreLaterTimeWins: re-adding a revocation moves its time forward,
// never back, and watchers see only changes.
func TestStoreLaterTimeWins(t *testing.T) {
	s, c, _ := newTestStore(t, time.Hour, 0)
	var seen []Revocation
	s.Watch(func(r Revocation) { seen = append(seen, r) })
	t0 := c.now()
	r := Revocation{Kind: KindMembership, ID: "u", OrgID: "o", At: t0}
	if !s.Add(r) {
		t.Fatal("first Add = false")
	}
	if s.Add(r) {
		t.Fatal("same revocation again changed the store")
	}
	earlier := r
	earlier.At = t0.Add(-time.Minute)
	if s.Add(earlier) {
		t.Fatal("an earlier time replaced a later one")
	}
	later := r
	later.At = t0.Add(time.Minute)
	if !s.Add(later) {
		t.Fatal("a later time was ignored")
	}
	if _, ok := s.Org("u", "o", t0.Add(30*time.Second)); !ok {
		t.Fatal("a token issued between the two revocations is accepted")
	}
	if len(seen) != 2 {
		t.Fatalf("watchers called %d times, want 2", len(seen))
	}
}

func TestRevocationValidate(t *testing.T) {
	at := time.Unix(1, 0)
	long := string(make([]byte, MaxIDBytes+1))
	cases := []struct {
		r  Revocation
		ok bool
	}{
		{Revocation{Kind: KindSession, ID: "s", At: at}, true},
		{Revocation{Kind: KindMembership, ID: "u", OrgID: "o", At: at}, true},
		{Revocation{Kind: KindMembership, ID: "u", At: at}, false},
		{Revocation{Kind: KindUser, ID: "u", OrgID: "o", At: at}, false},
		{Revocation{Kind: KindOrg, ID: "", At: at}, false},
		{Revocation{Kind: "token", ID: "x", At: at}, false},
		{Revocation{Kind: KindSession, ID: "s"}, false},
		{Revocation{Kind: KindSession, ID: long, At: at}, false},
	}
	for _, tc := range cases {
		err := tc.r.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tc.r, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate error %v is not ErrInvalid", err)
		}
	}
}

func TestNewStoreRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{{}, {TTL: -1}, {TTL: time.Second, MaxEntries: -1}} {
		if _, err := NewStore(cfg); err == nil {
			t.Errorf("NewStore(%+v) accepted", cfg)
		}
	}
}

// FuzzDecodeEntry: any entry document either decodes into a valid
// revocation that round-trips its fields, or is refused with ErrInvalid.
func FuzzDecodeEntry(f *testing.F) {
	f.Add("session", "sess_1", "", int64(1700000000), true, uint8(0))
	f.Add("membership", "user_1", "org_1", int64(1700000000), true, uint8(0))
	f.Add("membership", "user_1", "", int64(0), false, uint8(1))
	f.Add("org", "", "", int64(-5), true, uint8(2))
	f.Add("bogus", "x", "y", int64(1), true, uint8(3))
	f.Fuzz(func(t *testing.T, kind, id, org string, at int64, atIsTime bool, shape uint8) {
		data := map[string]any{"kind": kind, "id": id, "org_id": org}
		if atIsTime {
			data["at"] = time.Unix(at, 0)
		} else {
			data["at"] = at
		}
		switch shape % 4 {
		case 1:
			delete(data, "org_id")
		case 2:
			data["id"] = int64(len(id))
		case 3:
			data["kind"] = nil
		}
		r, err := DecodeEntry(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if r.Validate() != nil {
			t.Fatalf("decoded an invalid revocation %+v", r)
		}
		if string(r.Kind) != kind || r.ID != id || !r.At.Equal(time.Unix(at, 0)) {
			t.Fatalf("decoded %+v from kind=%q id=%q at=%d", r, kind, id, at)
		}
	})
}
