package gateway

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/firegate/firegate/authz"
)

// ipv6BucketBits is the prefix length that per-IP limits bucket IPv6
// addresses by: a /64 is what one subscriber (one home, one VM) typically
// gets, so an attacker holding one can rotate through 2^64 addresses.
const ipv6BucketBits = 64

// ipBucket returns the limiter key of a client address: an IPv4 address
// (IPv4-mapped IPv6 included) as itself, an IPv6 address as its /64 prefix.
// A key that is not an IP address is returned unchanged.
func ipBucket(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.WithZone("").Prefix(ipv6BucketBits)
	if err != nil {
		return ip
	}
	return p.String()
}

// keyedLimiter is a token bucket per key (a client IP) with bounded
// memory: entries idle long enough to have refilled are evicted, and when
// the table is full the oldest idle entries go first; a key that still
// finds no room shares one overflow bucket (so an address-spraying attack
// is limited as a whole instead of growing the table). Keys are client
// addresses, bucketed by ipBucket (IPv6 by /64). Safe for concurrent use;
// each shard's mutex guards its map.
type keyedLimiter struct {
	limit    rate.Limit
	burst    int
	idle     time.Duration // an entry unused this long is full again: drop it
	perShard int
	seed     maphash.Seed
	shards   [32]limiterShard
	overflow *rate.Limiter
	now      func() time.Time
}

type limiterShard struct {
	mu sync.Mutex
	m  map[string]*limiterEntry
}

type limiterEntry struct {
	lim  *rate.Limiter
	last time.Time
}

func newKeyedLimiter(limit rate.Limit, burst, maxKeys int, now func() time.Time) *keyedLimiter {
	k := &keyedLimiter{limit: limit, burst: burst, seed: maphash.MakeSeed(), now: now,
		overflow: rate.NewLimiter(limit, burst)}
	k.perShard = max(1, maxKeys/len(k.shards))
	fill := time.Duration(float64(burst) / float64(limit) * float64(time.Second))
	k.idle = max(fill, time.Second)
	for i := range k.shards {
		k.shards[i].m = make(map[string]*limiterEntry)
	}
	return k
}

func (k *keyedLimiter) shard(key string) *limiterShard {
	return &k.shards[maphash.String(k.seed, key)%uint64(len(k.shards))]
}

// reserve takes n tokens for key if available and reports ok; otherwise
// it reports how long until they would be.
func (k *keyedLimiter) take(key string, n int) (ok bool, retry time.Duration) {
	key = ipBucket(key)
	now := k.now()
	s := k.shard(key)
	s.mu.Lock()
	e := s.m[key]
	if e == nil {
		if len(s.m) >= k.perShard {
			k.evictLocked(s, now)
		}
		if len(s.m) >= k.perShard {
			s.mu.Unlock()
			return k.takeFrom(k.overflow, now, n)
		}
		e = &limiterEntry{lim: rate.NewLimiter(k.limit, k.burst)}
		s.m[key] = e
	}
	e.last = now
	ok, retry = k.takeFrom(e.lim, now, n)
	s.mu.Unlock()
	return ok, retry
}

func (k *keyedLimiter) takeFrom(l *rate.Limiter, now time.Time, n int) (bool, time.Duration) {
	r := l.ReserveN(now, n)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// available reports whether key has at least one token, without taking it.
func (k *keyedLimiter) available(key string) (bool, time.Duration) {
	key = ipBucket(key)
	now := k.now()
	s := k.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key]
	if e == nil {
		return true, 0
	}
	if e.lim.TokensAt(now) >= 1 {
		return true, 0
	}
	r := e.lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return false, d
}

func (k *keyedLimiter) evictLocked(s *limiterShard, now time.Time) {
	for key, e := range s.m {
		if now.Sub(e.last) >= k.idle {
			delete(s.m, key)
		}
	}
}

// sweep evicts idle entries from every shard; call it periodically.
func (k *keyedLimiter) sweep() {
	now := k.now()
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		k.evictLocked(s, now)
		s.mu.Unlock()
	}
}

// size is the number of tracked keys.
func (k *keyedLimiter) size() int {
	n := 0
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// userCounter caps concurrent connections per user. Safe for concurrent
// use; mu guards m.
type userCounter struct {
	mu  sync.Mutex
	max int
	m   map[string]int
}

func (u *userCounter) acquire(user string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m[user] >= u.max {
		return false
	}
	u.m[user]++
	return true
}

func (u *userCounter) release(user string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m[user] <= 1 {
		delete(u.m, user)
		return
	}
	u.m[user]--
}

// feedUser is the user charged for a new Feed against the per-user share
// of its org's Feeds: the caller for org-scoped Feeds, nobody for
// user-scoped ones (the tenant is the user).
func feedUser(dec *authz.Decision, p *authz.Principal) string {
	if dec.Scope == authz.ScopeOrg {
		return p.UserID
	}
	return ""
}
