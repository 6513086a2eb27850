package subscriptions

import (
	"context"
	"time"

	"github.com/firegate/firegate/wire"
)

// FleetSource is implemented by a Source that shares Feeds across gateway
// instances (fleet mode; package fleet implements it, subscriptions never
// imports it). The Hub then asks it for every new Feed's epoch, so that a
// Feed has the same epoch on every instance, and runs each Feed's upstream
// through ListenFeed instead of Listen. Implementations must be safe for
// concurrent use.
type FleetSource interface {
	Source
	// FeedEpoch returns the epoch for a new Feed with key (FeedSpec.Key)
	// of tenant (FeedSpec.Tenant): the fleet-wide epoch when the Feed
	// exists elsewhere, else a fresh one. Called with no Hub lock held,
	// before the Feed is created; it may block briefly on the network and
	// must return a non-empty epoch even when the fleet is unreachable
	// (degraded mode).
	FeedEpoch(key, tenant string) string
	// ListenFeed runs the Feed's upstream until ctx ends (it then returns
	// ctx.Err()) or fails, exactly as Listen does, and emits in order from
	// one goroutine. A Snapshot's Seq, History and Published fields (see
	// Snapshot) are how a fleet owner's numbering reaches this Feed and
	// how this Feed's changes reach the fleet. The Hub calls ListenFeed
	// again, after its usual backoff, when it returns an error.
	ListenFeed(ctx context.Context, f FleetFeed, emit func(*Snapshot)) error
}

// FleetInterest may be implemented by a FleetSource. RemoteInterest
// reports, without blocking, whether another instance still has
// subscribers of the Feed with key (this instance owns it and runs its
// listener for them): the Hub then starts a Feed's linger again instead of
// closing it, so the owner stops one linger after the last subscriber
// fleet-wide left.
type FleetInterest interface {
	RemoteInterest(key string) bool
}

// FleetLimiter may be implemented by a FleetSource to make
// HubConfig.MaxFeedsPerTenant hold across the fleet. FleetFeeds reports
// what the fleet knows of tenant's Feeds:
//
//   - others: the live Feeds of tenant that another instance owns and
//     whose key is neither key nor one of local (the keys of this Hub's
//     Feeds of tenant, which the Hub counts itself);
//   - exists: whether the Feed with key is live and owned by another
//     instance (opening it here mirrors it: no new Firestore listener);
//   - ok: false when the fleet's view is unknown (NATS unreachable, or
//     not yet read); the Hub then applies its local count alone.
//
// The Hub calls FleetFeeds with its limit lock held (a leaf lock of the
// implementation may be taken): it must not block, do I/O or call back
// into the Hub. Its answer may lag the fleet by the time a lease change
// takes to reach this instance.
//
// Refused tells that the Hub refused the new Feed for key (a limit, or
// Close) after FeedEpoch: a lease FeedEpoch took for it may be released,
// so that other instances stop counting it. Called with no Hub lock held;
// it may block briefly on the network.
type FleetLimiter interface {
	FleetFeeds(tenant, key string, local []string) (others int, exists, ok bool)
	Refused(key string)
}

// FleetFeed is what a FleetSource sees of a Feed. Its methods are safe for
// concurrent use.
type FleetFeed interface {
	// Key is the Feed key (FeedSpec.Key), the same on every instance.
	Key() string
	// Tenant is the Feed's tenant (FeedSpec.Tenant).
	Tenant() string
	// Epoch is the Feed's epoch (fixed for the Feed's life).
	Epoch() string
	// Seq is the Feed's current seq (0 before its first snapshot). It
	// takes the Feed's lock only to read it: cheap, unlike State.
	Seq() uint64
	// Query is what the Feed's listener runs.
	Query() Query
	// State returns the Feed's visible documents in snapshot order, its
	// seq and its replay history; ok is false before the Feed's first
	// snapshot or after it closed. It takes the Feed's lock.
	State() (st FeedState, ok bool)
}

// FeedState is a Feed's state as State returns it: what a new mirror on
// another instance starts from.
type FeedState struct {
	Seq     uint64
	Docs    []wire.Doc // snapshot order; Data is immutable and shared
	History []HistoryEntry
}

// HistoryEntry is one replay buffer entry: the visible changes of the
// `changes` message with seq Seq, fanned out at At.
type HistoryEntry struct {
	Seq     uint64
	At      time.Time
	Changes []HistoryChange
}

// HistoryChange is one change of a HistoryEntry (no data: net changes are
// built from the visible set).
type HistoryChange struct {
	Kind ChangeKind
	ID   string
	Path string
}

// fleetFeed adapts a feed to FleetFeed.
type fleetFeed struct{ f *feed }

func (x fleetFeed) Key() string    { return x.f.spec.Key }
func (x fleetFeed) Tenant() string { return x.f.spec.Tenant }
func (x fleetFeed) Epoch() string  { return x.f.epoch }
func (x fleetFeed) Query() Query   { return x.f.spec.Query }

func (x fleetFeed) Seq() uint64 {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	return x.f.seq
}

func (x fleetFeed) State() (FeedState, bool) {
	f := x.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ready || f.closed {
		return FeedState{}, false
	}
	st := FeedState{Seq: f.seq}
	for _, e := range f.ordered() {
		st.Docs = append(st.Docs, wire.Doc{ID: e.id, Path: e.path, Data: e.data, UpdateTime: e.updateStr})
	}
	f.replay.prune(f.hub.now())
	for i := 0; i < f.replay.n; i++ {
		e := &f.replay.buf[(f.replay.head+i)%len(f.replay.buf)]
		he := HistoryEntry{Seq: e.seq, At: e.at, Changes: make([]HistoryChange, len(e.changes))}
		for j, c := range e.changes {
			he.Changes[j] = HistoryChange{Kind: c.kind, ID: c.id, Path: c.path}
		}
		st.History = append(st.History, he)
	}
	return st, true
}

// seedReplay replaces the replay buffer by history (a mirror's Feed takes
// over the owner's buffer): entries after seq base. Entries must be in seq
// order and contiguous up to the Feed's seq; anything else leaves the
// buffer empty from the Feed's seq on (a resume from before it gets a
// snapshot). Called with mu held.
func (f *feed) seedReplay(history []HistoryEntry) {
	f.replay = newReplayRing(f.hub.cfg.ReplayCount, f.hub.cfg.ReplayAge)
	f.replay.base = f.seq
	if len(history) == 0 || history[len(history)-1].Seq != f.seq {
		return
	}
	for i := 1; i < len(history); i++ {
		if history[i].Seq != history[i-1].Seq+1 {
			return
		}
	}
	if len(history) > f.hub.cfg.ReplayCount {
		history = history[len(history)-f.hub.cfg.ReplayCount:]
	}
	f.replay.base = history[0].Seq - 1
	for _, h := range history {
		e := f.replay.add(h.Seq, h.At)
		for _, c := range h.Changes {
			e.changes = append(e.changes, replayChange{id: c.ID, path: c.Path, kind: c.Kind})
		}
	}
	f.replay.prune(f.hub.now())
}
