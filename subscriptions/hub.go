package subscriptions

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firegate/firegate/internal/clock"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/wire"
)

// HubConfig configures a Hub. The zero value is a valid configuration: every
// zero field takes the default its comment names. Negative values are
// rejected by NewHub, except for Linger.
type HubConfig struct {
	// Linger is how long a Feed whose last subscriber left stays open (its
	// listener running) so reconnects and resumes hit it warm. 0 means
	// 30s; negative closes the Feed as soon as its last subscriber leaves.
	Linger time.Duration
	// MaxFeeds caps Feeds overall, lingering ones included (each is one
	// Firestore listener). 0 means DefaultMaxFeeds.
	MaxFeeds int
	// MaxFeedsPerTenant caps Feeds per FeedSpec.Tenant. 0 means 100. In
	// fleet mode (a Source implementing FleetLimiter, while it knows the
	// fleet) the cap holds across the fleet: a new Feed is refused when
	// the tenant's Feeds on this instance plus those other instances own
	// reach it, unless another instance already owns the Feed (opening it
	// here mirrors it). MaxFeeds stays per instance.
	MaxFeedsPerTenant int
	// MaxFeedBytesPerTenant is a tenant's budget of Feed result bytes: a
	// new Feed is refused (Limit "feed_bytes_per_org") while the tenant's
	// Feeds already hold at least this much. A Feed's size is the sum, over
	// the documents it holds visible, of len(path) + len(the document's
	// data as encoded JSON) — what its snapshot carries. Existing Feeds are
	// never cut. 0 means 64 MiB; negative is an error.
	MaxFeedBytesPerTenant int64
	// MaxFeedSharePerUser is the share of MaxFeedsPerTenant one user
	// (FeedSpec.User) may have opened among a tenant's live Feeds: at most
	// max(1, floor(share × MaxFeedsPerTenant)); past it a new Feed is
	// refused (Limit "feed_share_per_user"). In (0, 1]; 0 means 1 (only
	// the tenant's cap applies).
	MaxFeedSharePerUser float64
	// ReplayCount is the number of `changes` messages each Feed keeps for
	// resume and catch-up. 0 means 1024.
	ReplayCount int
	// ReplayAge drops replay entries older than this. 0 means 5m.
	ReplayAge time.Duration
	// SnapshotChunkBytes bounds the encoded size of one snapshot chunk
	// (Message.Size(), i.e. without the subscription id); a single bigger
	// document still goes alone. 0 means 256 KiB.
	SnapshotChunkBytes int
	// RetryMin and RetryMax bound the exponential backoff (with feedJitter)
	// between listener rebuilds after transient errors. 0 means 500ms and
	// 30s.
	RetryMin, RetryMax time.Duration
	// Metrics receives the Hub's counters; nil means metrics.New(nil).
	Metrics *metrics.Metrics
	// Logger receives listener failures at Warn; nil discards.
	Logger *slog.Logger
	// Clock stamps replay entries, decides their age and schedules linger
	// expiry; nil means the wall clock.
	Clock clock.Clock
}

// Defaults applied by NewHub to zero HubConfig fields.
const (
	hubDefaultLinger             = 30 * time.Second
	hubDefaultMaxFeedsPerTenant  = 100
	hubDefaultMaxFeedBytes       = 64 << 20
	hubDefaultReplayCount        = 1024
	hubDefaultReplayAge          = 5 * time.Minute
	hubDefaultSnapshotChunkBytes = 256 << 10
	hubDefaultRetryMin           = 500 * time.Millisecond
	hubDefaultRetryMax           = 30 * time.Second
)

// ErrHubClosed is returned by Subscribe after Close.
var ErrHubClosed = errors.New("subscriptions: hub closed")

// LimitError refuses a Subscribe that would have opened a new Feed past
// MaxFeeds (Limit "feeds"), MaxFeedsPerTenant (Limit "feeds_per_org"),
// MaxFeedBytesPerTenant (Limit "feed_bytes_per_org") or
// MaxFeedSharePerUser (Limit "feed_share_per_user"), when no lingering
// Feed could be evicted to make room.
// RetryAfter is a hint: the Hub's linger, after which idle Feeds free their
// slots (at least one second).
type LimitError struct {
	Limit      metrics.Limit
	RetryAfter time.Duration
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("feed limit %q reached; retry after %s", e.Limit, e.RetryAfter)
}

// Limits carried by LimitError (rate_limited_total label values).
const (
	LimitFeeds          = metrics.LimitFeeds
	LimitFeedsPerTenant = metrics.LimitFeedsPerOrg
	LimitFeedBytes      = metrics.LimitFeedBytesPerOrg
	LimitFeedShare      = metrics.LimitFeedSharePerUser
)

const hubShards = 32

type hubShard struct {
	mu    sync.Mutex
	feeds map[string]*feed // guarded by mu
}

// Hub is the registry of Feeds: one Feed per distinct FeedSpec.Key, each
// with one upstream listener shared by all its subscribers. A Hub is safe
// for concurrent use.
//
// Locking. The registry is split into 32 shards by key hash; a shard's mutex
// guards its key→Feed map. Each Feed has its own mutex guarding its state,
// visible set, replay buffer and subscriber list; every Deliver happens
// under it. limMu guards the Feed counts used for the limits. The lock
// order is
//
//	shard.mu → feed.mu → limMu
//
// (any of them may be skipped; never the reverse). limMu and cbMu (linger
// callback admission) are leaves of the Hub: no Hub lock is taken while
// holding them (under limMu, a FleetLimiter may take its own leaf lock). Subscribe holds a shard
// lock only to find or create a Feed and reserve a reference (an atomic
// increment, no Feed lock); it then attaches under the Feed lock alone, so a
// long fan-out never stalls a shard. A Feed removes itself (linger expiry,
// permanent error) by taking its shard lock and then its own lock, from
// its own goroutine or a timer callback that holds no other lock. No lock is
// held while waiting: Listen, backoff sleeps, timer waits and Close's
// waits all happen with no lock held; Deliver never blocks. Move holds one
// lock at a time: the new key's shard lock to reserve, then the old Feed's
// lock to capture and detach, then the new Feed's lock to attach.
type Hub struct {
	src    Source
	cfg    HubConfig
	m      *metrics.Metrics
	log    *slog.Logger
	now    func() time.Time
	seed   maphash.Seed
	shards [hubShards]hubShard

	limMu       sync.Mutex
	total       int                           // registered Feeds; guarded by limMu
	perTenant   map[string]int                // registered Feeds per tenant; guarded by limMu
	tenantFeeds map[string]map[*feed]struct{} // registered Feeds per tenant; guarded by limMu
	perUser     map[tenantUser]int            // Feeds opened per (tenant, user); guarded by limMu
	// retired holds the Feeds Retire took out of the registry while they
	// had subscribers, until they close (so Close still reaches them);
	// guarded by limMu.
	retired map[*feed]struct{}

	closed atomic.Bool    // set first thing by Close
	wg     sync.WaitGroup // Feed goroutines

	cbMu     sync.Mutex     // admits linger callbacks until Close
	cbClosed bool           // guarded by cbMu
	cbWG     sync.WaitGroup // linger callbacks in flight

	listeners atomic.Uint64

	// afterFunc schedules linger expiry; tests replace it before the first
	// Subscribe to drive expiry by hand.
	afterFunc func(d time.Duration, fn func()) (stop func() bool)
}

// NewHub validates cfg, applies its defaults and returns a Hub whose Feeds
// listen through src.
func NewHub(src Source, cfg HubConfig) (*Hub, error) {
	if src == nil {
		return nil, errors.New("failed to create hub: nil Source")
	}
	for _, v := range []struct {
		name string
		bad  bool
	}{
		{"MaxFeeds", cfg.MaxFeeds < 0},
		{"MaxFeedsPerTenant", cfg.MaxFeedsPerTenant < 0},
		{"MaxFeedBytesPerTenant", cfg.MaxFeedBytesPerTenant < 0},
		{"MaxFeedSharePerUser", cfg.MaxFeedSharePerUser < 0},
		{"ReplayCount", cfg.ReplayCount < 0},
		{"ReplayAge", cfg.ReplayAge < 0},
		{"SnapshotChunkBytes", cfg.SnapshotChunkBytes < 0},
		{"RetryMin", cfg.RetryMin < 0},
		{"RetryMax", cfg.RetryMax < 0},
	} {
		if v.bad {
			return nil, fmt.Errorf("failed to create hub: %s must not be negative", v.name)
		}
	}
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	defInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	def(&cfg.Linger, hubDefaultLinger)
	def(&cfg.ReplayAge, hubDefaultReplayAge)
	def(&cfg.RetryMin, hubDefaultRetryMin)
	def(&cfg.RetryMax, hubDefaultRetryMax)
	defInt(&cfg.MaxFeeds, DefaultMaxFeeds)
	defInt(&cfg.MaxFeedsPerTenant, hubDefaultMaxFeedsPerTenant)
	defInt(&cfg.ReplayCount, hubDefaultReplayCount)
	defInt(&cfg.SnapshotChunkBytes, hubDefaultSnapshotChunkBytes)
	if cfg.MaxFeedBytesPerTenant == 0 {
		cfg.MaxFeedBytesPerTenant = hubDefaultMaxFeedBytes
	}
	if cfg.MaxFeedSharePerUser == 0 {
		cfg.MaxFeedSharePerUser = 1
	}
	if cfg.MaxFeedSharePerUser > 1 {
		return nil, fmt.Errorf("failed to create hub: MaxFeedSharePerUser %v exceeds 1", cfg.MaxFeedSharePerUser)
	}
	if cfg.RetryMin > cfg.RetryMax {
		return nil, fmt.Errorf("failed to create hub: RetryMin %s exceeds RetryMax %s", cfg.RetryMin, cfg.RetryMax)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.Clock = clock.Or(cfg.Clock)
	h := &Hub{
		src:         src,
		cfg:         cfg,
		m:           cfg.Metrics,
		log:         cfg.Logger,
		now:         cfg.Clock.Now,
		seed:        maphash.MakeSeed(),
		perTenant:   make(map[string]int),
		tenantFeeds: make(map[string]map[*feed]struct{}),
		perUser:     make(map[tenantUser]int),
		retired:     make(map[*feed]struct{}),
		afterFunc:   func(d time.Duration, fn func()) func() bool { return cfg.Clock.AfterFunc(d, fn).Stop },
	}
	for i := range h.shards {
		h.shards[i].feeds = make(map[string]*feed)
	}
	return h, nil
}

func (h *Hub) shardFor(key string) *hubShard {
	return &h.shards[maphash.String(h.seed, key)%hubShards]
}

// Subscribe attaches sub to the Feed for spec, creating the Feed and
// starting its listener if needed, and delivers, in order and before any
// live message for this subscription: `subscribed` (catchUp=false), then
// either the resume catch-up — one `changes` message with the net change
// since resume.Seq, `subscribed` saying resumed=true; an empty changes
// list when resume.Seq is already the current seq — when resume names this
// Feed's epoch and its seq is still covered by the replay buffer, or
// the snapshot (chunks carrying the Feed's current seq, final on the last;
// an empty result is one chunk with no docs). The first message after
// `subscribed` carries catchUp=true. If the Feed has not received its first
// upstream snapshot yet, the snapshot follows as soon as it arrives; a
// resume naming such a Feed's epoch (fleet mode: the epoch is fleet-wide)
// waits for it too, `subscribed` included, and is then decided as above
// against the replay buffer the Feed starts with. These deliveries may
// happen before Subscribe returns.
//
// Joining an existing Feed is never limited; a new Feed past MaxFeeds or
// MaxFeedsPerTenant is refused with a *LimitError. If the Feed was just
// closed by a permanent upstream error, sub gets `subscribed` and the
// `unsubscribed` end message, and the returned Subscription is detached.
func (h *Hub) Subscribe(spec FeedSpec, sub Subscriber, resume *wire.Resume) (*Subscription, error) {
	if sub == nil {
		return nil, errors.New("failed to subscribe: nil Subscriber")
	}
	if spec.Key == "" {
		return nil, errors.New("failed to subscribe: empty feed key")
	}
	f, err := h.acquire(spec)
	if err != nil {
		return nil, err
	}
	return f.attach(sub, resume, nil)
}

// Lagger may be implemented by a Subscriber that can drop messages it was
// delivered (a bounded send queue that overflows) until a catchUp message
// comes. Move asks the old Subscription's Subscriber under the old Feed's
// lock, atomically with that Feed's deliveries: true means it dropped some
// and holds no known state, so Move sends a fresh snapshot whatever
// clientCurrent says. Lagging is called with a Feed's lock held: it must not
// block and must not call back into the Hub.
type Lagger interface {
	Lagging() bool
}

// Move moves a subscriber to the Feed for spec when its key changed (a
// token refresh changed an attribute the policy filter reads) without a
// snapshot. It detaches old from its Feed exactly as Unsubscribe does
// (reference count, linger) and attaches sub to the Feed for spec, creating
// it if needed under the same limits as Subscribe. Before any live message
// of the new Feed, sub gets `subscribed` with the new Feed's epoch and
// resumed=true (catchUp=false), then one `changes` message (catchUp=true,
// seq = the new Feed's current seq, no read_time) holding the diff between
// what the old Feed had made visible to old's subscriber and the new
// Feed's visible set: `removed` for a document visible only in the old,
// `added` for one visible only in the new, `modified` (whole document) for
// one visible in both at a different version (update time), nothing for
// one at the same version; an empty list when they are equal. If the new
// Feed has not received its first upstream snapshot yet, the diff follows
// when it does; a subscription moved again before that carries its
// original base along.
//
// The diff is against the old Feed's state, not the client's, so it is
// right only for a subscriber that accepted every message of old so far:
// the caller passes clientCurrent=false when it knows otherwise (a send
// queue that overflowed and awaits CatchUp), and a Subscriber implementing
// Lagger is asked under the old Feed's lock, which closes the window
// between the caller's check and the detach. A non-current subscriber, as
// well as one whose old Feed has not sent it a snapshot yet (or whose old
// Subscription was already detached), gets what Subscribe would give it
// without resume instead: `subscribed` resumed=false and a fresh snapshot.
//
// If spec.Key equals old's Feed key, Move returns old unchanged, delivers
// nothing and does not look at sub or clientCurrent. Otherwise old is
// detached when Move returns, whether or not it succeeds (so a caller that
// lost a role never keeps receiving the old Feed), and no Deliver for old
// happens after that. Move refuses a new Feed past MaxFeeds or
// MaxFeedsPerTenant with a *LimitError, returns ErrHubClosed after Close,
// and on a Feed just closed by a permanent upstream error behaves as
// Subscribe. Safe for concurrent use, also with old's own methods (each
// takes old's Feed lock; an Unsubscribe of old that wins makes Move send a
// snapshot, and the caller then owns the returned Subscription). Deliveries
// may happen before Move returns.
//
// Locking: Move holds at most one lock at a time: the new key's shard lock
// to reserve the new Feed (no Feed lock), then the old Feed's lock to
// capture the old visible set and detach, then the new Feed's lock to
// attach and deliver.
func (h *Hub) Move(old *Subscription, spec FeedSpec, sub Subscriber, clientCurrent bool) (*Subscription, error) {
	if old == nil {
		return nil, errors.New("failed to move subscription: nil Subscription")
	}
	if spec.Key == old.f.spec.Key {
		return old, nil
	}
	if sub == nil || spec.Key == "" {
		old.Unsubscribe()
		if sub == nil {
			return nil, errors.New("failed to move subscription: nil Subscriber")
		}
		return nil, errors.New("failed to move subscription: empty feed key")
	}
	f, err := h.acquire(spec)
	if err != nil {
		old.Unsubscribe()
		return nil, err
	}
	base := old.leave(clientCurrent)
	return f.attach(sub, nil, base)
}

// maxEvictions bounds how many lingering Feeds one acquire may evict
// before it gives up and refuses.
const maxEvictions = 64

// tenantUser keys the per-user Feed counts.
type tenantUser struct{ tenant, user string }

// acquire finds or creates the Feed for spec and reserves a reference on it.
// When a cap refuses a new Feed, lingering Feeds that hold what the cap
// counts are evicted, oldest lingering first, before it gives up.
func (h *Hub) acquire(spec FeedSpec) (*feed, error) {
	epoch := ""
	if fs, ok := h.src.(FleetSource); ok {
		// Fleet mode: the epoch comes from the fleet, asked with no lock
		// held and only for a Feed this instance does not have yet.
		if f, err := h.join(spec.Key); f != nil || err != nil {
			return f, err
		}
		// The fleet-wide per-tenant cap is checked before FeedEpoch, which
		// may take the Feed's lease, so that a refused Feed leaves none
		// behind; takeSlot checks it again.
		if err := h.fleetAdmit(spec); err != nil {
			return nil, err
		}
		epoch = fs.FeedEpoch(spec.Key, spec.Tenant)
	}
	for evicted := 0; ; evicted++ {
		f, err := h.tryAcquire(spec, epoch)
		var le *LimitError
		if !errors.As(err, &le) || evicted >= maxEvictions || !h.evictLingering(spec, le.Limit) {
			if fl, ok := h.src.(FleetLimiter); ok && err != nil && epoch != "" {
				fl.Refused(spec.Key)
			}
			return f, err
		}
	}
}

// tryAcquire is one attempt of acquire, under the key's shard lock; a
// non-empty epoch (fleet mode) replaces a new Feed's random one.
func (h *Hub) tryAcquire(spec FeedSpec, epoch string) (*feed, error) {
	sh := h.shardFor(spec.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if h.closed.Load() {
		return nil, ErrHubClosed
	}
	if f := sh.feeds[spec.Key]; f != nil {
		f.refs.Add(1)
		return f, nil
	}
	f := newFeed(h, spec)
	if epoch != "" {
		f.setEpoch(epoch)
	}
	if err := h.takeSlot(f); err != nil {
		f.cancel()
		return nil, err
	}
	f.refs.Add(1)
	sh.feeds[spec.Key] = f
	h.m.FeedsActive.Inc()
	h.wg.Add(1)
	go f.run()
	return f, nil
}

// join reserves a reference on the registered Feed for key, if any.
func (h *Hub) join(key string) (*feed, error) {
	sh := h.shardFor(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if h.closed.Load() {
		return nil, ErrHubClosed
	}
	if f := sh.feeds[key]; f != nil {
		f.refs.Add(1)
		return f, nil
	}
	return nil, nil
}

// takeSlot counts a new Feed against the limits and registers it with its
// tenant, or refuses it.
func (h *Hub) takeSlot(f *feed) error {
	tenant := f.spec.Tenant
	tu := tenantUser{tenant, f.spec.User}
	h.limMu.Lock()
	defer h.limMu.Unlock()
	refuse := func(l metrics.Limit) error {
		return &LimitError{Limit: l, RetryAfter: max(h.cfg.Linger, time.Second)}
	}
	switch {
	case h.total >= h.cfg.MaxFeeds:
		return refuse(LimitFeeds)
	case h.tenantFullLocked(f.spec):
		return refuse(LimitFeedsPerTenant)
	case f.spec.User != "" && h.perUser[tu] >= h.userCap():
		return refuse(LimitFeedShare)
	case h.tenantBytesLocked(tenant) >= h.cfg.MaxFeedBytesPerTenant:
		return refuse(LimitFeedBytes)
	}
	h.total++
	h.perTenant[tenant]++
	if f.spec.User != "" {
		h.perUser[tu]++
	}
	set := h.tenantFeeds[tenant]
	if set == nil {
		set = make(map[*feed]struct{})
		h.tenantFeeds[tenant] = set
	}
	set[f] = struct{}{}
	return nil
}

// tenantFullLocked reports whether MaxFeedsPerTenant refuses a new Feed
// for spec (see tenantCountLocked). limMu is held.
func (h *Hub) tenantFullLocked(spec FeedSpec) bool {
	n, join := h.tenantCountLocked(spec)
	return !join && n >= h.cfg.MaxFeedsPerTenant
}

// tenantCountLocked returns how many Feeds MaxFeedsPerTenant counts for
// spec's tenant: its Feeds here plus, in fleet mode while the fleet's view
// is known, those other instances own; join reports that another instance
// already owns the Feed for spec (opening it here mirrors it, which is
// never limited, as joining a Feed here is not). limMu is held; the
// FleetLimiter does not block.
func (h *Hub) tenantCountLocked(spec FeedSpec) (n int, join bool) {
	n = h.perTenant[spec.Tenant]
	fl, ok := h.src.(FleetLimiter)
	if !ok {
		return n, false
	}
	local := make([]string, 0, len(h.tenantFeeds[spec.Tenant]))
	for f := range h.tenantFeeds[spec.Tenant] {
		local = append(local, f.spec.Key)
	}
	others, exists, known := fl.FleetFeeds(spec.Tenant, spec.Key, local)
	if !known {
		return n, false
	}
	return n + others, exists
}

// fleetAdmit applies the fleet-wide MaxFeedsPerTenant to a new Feed for
// spec before its epoch is asked for, evicting the tenant's lingering
// Feeds here as acquire does. Evicting a Feed another instance owns (a
// mirror here) frees no fleet slot; fleetAdmit gives up after such an
// eviction. Called with no lock held; nil outside fleet mode.
func (h *Hub) fleetAdmit(spec FeedSpec) error {
	if _, ok := h.src.(FleetLimiter); !ok {
		return nil
	}
	prev := -1
	for evicted := 0; ; evicted++ {
		h.limMu.Lock()
		n, join := h.tenantCountLocked(spec)
		h.limMu.Unlock()
		if join || n < h.cfg.MaxFeedsPerTenant {
			return nil
		}
		if (prev >= 0 && n >= prev) || evicted >= maxEvictions || !h.evictLingering(spec, LimitFeedsPerTenant) {
			return &LimitError{Limit: LimitFeedsPerTenant, RetryAfter: max(h.cfg.Linger, time.Second)}
		}
		prev = n
	}
}

// userCap is how many of a tenant's Feeds one user may have opened.
func (h *Hub) userCap() int {
	return max(1, int(h.cfg.MaxFeedSharePerUser*float64(h.cfg.MaxFeedsPerTenant)))
}

// tenantBytesLocked sums the sizes of the tenant's Feeds. limMu is held.
func (h *Hub) tenantBytesLocked(tenant string) int64 {
	var n int64
	for f := range h.tenantFeeds[tenant] {
		n += f.bytes.Load()
	}
	return n
}

// TenantBytes is the size of the tenant's Feeds (see
// HubConfig.MaxFeedBytesPerTenant).
func (h *Hub) TenantBytes(tenant string) int64 {
	h.limMu.Lock()
	defer h.limMu.Unlock()
	return h.tenantBytesLocked(tenant)
}

// evictLingering closes the oldest lingering Feed (no subscriber, waiting
// for its linger to expire) that holds what limit counts for spec: any
// Feed for "feeds", the tenant's for "feeds_per_org" and
// "feed_bytes_per_org", the tenant's opened by spec.User for
// "feed_share_per_user". It reports whether it closed one. Called with no
// lock held.
func (h *Hub) evictLingering(spec FeedSpec, limit metrics.Limit) bool {
	var candidates []*feed
	switch limit {
	case LimitFeeds:
		for i := range h.shards {
			sh := &h.shards[i]
			sh.mu.Lock()
			for _, f := range sh.feeds {
				candidates = append(candidates, f)
			}
			sh.mu.Unlock()
		}
	case LimitFeedsPerTenant, LimitFeedBytes, LimitFeedShare:
		h.limMu.Lock()
		for f := range h.tenantFeeds[spec.Tenant] {
			if limit != LimitFeedShare || f.spec.User == spec.User {
				candidates = append(candidates, f)
			}
		}
		h.limMu.Unlock()
	default:
		return false
	}
	var victim *feed
	var victimAt time.Time
	var victimGen uint64
	for _, f := range candidates {
		f.mu.Lock()
		lingering := !f.closed && f.refs.Load() == 0 && f.lingerStop != nil
		at, gen := f.lingerAt, f.lingerGen
		f.mu.Unlock()
		if lingering && (victim == nil || at.Before(victimAt)) {
			victim, victimAt, victimGen = f, at, gen
		}
	}
	if victim == nil {
		return false
	}
	h.expireLinger(victim, victimGen)
	victim.mu.Lock()
	closed := victim.closed
	victim.mu.Unlock()
	if closed {
		h.log.Debug("evicted a lingering feed to make room", "collection", victim.spec.Query.Collection, "limit", limit.String())
	}
	return closed
}

// forget releases a retired Feed's slot; called exactly once per Feed, by
// whoever set its closed flag.
func (h *Hub) forget(f *feed) {
	h.limMu.Lock()
	delete(h.retired, f)
	h.total--
	if n := h.perTenant[f.spec.Tenant] - 1; n > 0 {
		h.perTenant[f.spec.Tenant] = n
	} else {
		delete(h.perTenant, f.spec.Tenant)
	}
	if f.spec.User != "" {
		tu := tenantUser{f.spec.Tenant, f.spec.User}
		if n := h.perUser[tu] - 1; n > 0 {
			h.perUser[tu] = n
		} else {
			delete(h.perUser, tu)
		}
	}
	if set := h.tenantFeeds[f.spec.Tenant]; set != nil {
		delete(set, f)
		if len(set) == 0 {
			delete(h.tenantFeeds, f.spec.Tenant)
		}
	}
	h.limMu.Unlock()
	h.m.FeedsActive.Dec()
}

// armLinger schedules the linger expiry of f for generation gen.
func (h *Hub) armLinger(f *feed, gen uint64) func() bool {
	return h.afterFunc(h.cfg.Linger, func() {
		h.cbMu.Lock()
		if h.cbClosed {
			h.cbMu.Unlock()
			return
		}
		h.cbWG.Add(1)
		h.cbMu.Unlock()
		defer h.cbWG.Done()
		if fi, ok := h.src.(FleetInterest); ok && fi.RemoteInterest(f.spec.Key) {
			h.rearmLinger(f, gen)
			return
		}
		h.expireLinger(f, gen)
	})
}

// rearmLinger starts f's linger gen again (fleet mode: another instance
// still has subscribers of the Feed this instance owns). Must be called
// with no lock held.
func (h *Hub) rearmLinger(f *feed, gen uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.lingerGen != gen || f.refs.Load() != 0 {
		return
	}
	f.lingerStop = h.armLinger(f, gen)
}

// expireLinger closes f if it still has no subscriber and gen is still its
// current linger generation (a revived Feed that emptied again has a newer
// one). Must be called with no lock held.
func (h *Hub) expireLinger(f *feed, gen uint64) {
	sh := h.shardFor(f.spec.Key)
	sh.mu.Lock()
	f.mu.Lock()
	if f.closed || f.lingerGen != gen || f.refs.Load() != 0 {
		f.mu.Unlock()
		sh.mu.Unlock()
		return
	}
	f.closed = true
	if sh.feeds[f.spec.Key] == f {
		delete(sh.feeds, f.spec.Key)
	}
	sh.mu.Unlock()
	f.lingerStop = nil
	f.mu.Unlock()
	f.cancel()
	h.forget(f)
}

// failFeed closes f after a permanent upstream error: its subscribers are
// detached and each gets `unsubscribed` upstream_error with the error's
// message (End set). Called from f's goroutine with no lock held.
func (h *Hub) failFeed(f *feed, err *UpstreamError) {
	sh := h.shardFor(f.spec.Key)
	sh.mu.Lock()
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		sh.mu.Unlock()
		return
	}
	f.closed = true
	f.failure = err
	if sh.feeds[f.spec.Key] == f {
		delete(sh.feeds, f.spec.Key)
	}
	if f.lingerStop != nil {
		f.lingerStop()
		f.lingerStop = nil
	}
	// The end messages go out before the Feed is seen gone from the
	// registry (Deliver never blocks).
	f.detachAll(feedEndMessage(err))
	sh.mu.Unlock()
	f.mu.Unlock()
	f.cancel()
	h.forget(f)
}

// Close stops every Feed and listener and waits for their goroutines and
// pending linger callbacks. Subscribers are detached silently (the gateway
// closes connections first). Subscribe afterwards returns ErrHubClosed.
// Close is idempotent.
func (h *Hub) Close() {
	h.closed.Store(true)
	h.cbMu.Lock()
	h.cbClosed = true
	h.cbMu.Unlock()
	var feeds []*feed
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, f := range sh.feeds {
			feeds = append(feeds, f)
		}
		clear(sh.feeds)
		sh.mu.Unlock()
	}
	h.limMu.Lock()
	for f := range h.retired {
		feeds = append(feeds, f)
	}
	h.limMu.Unlock()
	for _, f := range feeds {
		f.mu.Lock()
		wasOpen := !f.closed
		f.closed = true
		if f.lingerStop != nil {
			f.lingerStop()
			f.lingerStop = nil
		}
		f.detachAll(nil)
		f.mu.Unlock()
		f.cancel()
		if wasOpen {
			h.forget(f)
		}
	}
	h.wg.Wait()
	h.cbWG.Wait()
}

// Retire takes every registered Feed whose spec stale reports true (a
// Feed planned under a policy rule that a reload replaced) out of the
// registry, so that no Subscribe or Move ever joins it again, and closes
// those that linger with no subscriber at once; one that still has
// subscribers closes when its last one leaves, without lingering. It
// returns how many Feeds it closed and how many it retired with
// subscribers still attached. stale is called with a shard lock held and
// must not call back into the Hub. Safe for concurrent use.
func (h *Hub) Retire(stale func(FeedSpec) bool) (closed, retired int) {
	var done []*feed
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for key, f := range sh.feeds {
			if !stale(f.spec) {
				continue
			}
			delete(sh.feeds, key)
			f.mu.Lock()
			f.retired = true
			if !f.closed && f.refs.Load() == 0 {
				f.closed = true
				if f.lingerStop != nil {
					f.lingerStop()
					f.lingerStop = nil
				}
				done = append(done, f)
			} else if !f.closed {
				retired++
				h.limMu.Lock()
				h.retired[f] = struct{}{}
				h.limMu.Unlock()
			}
			f.mu.Unlock()
		}
		sh.mu.Unlock()
	}
	for _, f := range done {
		f.cancel()
		h.forget(f)
	}
	return len(done), retired
}

// FeedCount returns the number of registered Feeds, lingering ones included.
func (h *Hub) FeedCount() int {
	h.limMu.Lock()
	defer h.limMu.Unlock()
	return h.total
}

// ListenersStarted returns how many Source.Listen calls the Hub has made.
func (h *Hub) ListenersStarted() uint64 { return h.listeners.Load() }

// feedFor returns the registered Feed for key, or nil (for tests).
func (h *Hub) feedFor(key string) *feed {
	sh := h.shardFor(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.feeds[key]
}
