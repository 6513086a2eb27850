// Package fleet shares Feeds across gateway instances through NATS
// JetStream (fleet mode, FIREGATE_NATS_URL): one owner per Feed runs the
// only Firestore listener of the fleet and publishes each change batch to a
// per-Feed subject of a JetStream stream; every other instance with
// subscribers of that Feed mirrors it from the stream.
//
// Source implements subscriptions.FleetSource around the real Firestore
// source:
//
//   - Ownership is a lease: a key (a hash of the Feed key) in a JetStream
//     KV bucket whose TTL is the lease time. Create acquires it, Update with
//     the last revision renews it (every third of the TTL), Delete with the
//     last revision releases it (the Feed closed, or the instance drains).
//     The lease value holds the owner and the Feed's epoch, so every
//     instance opens the Feed with the same epoch.
//   - The owner runs the inner Source's listener; each `changes` message its
//     Feed fans out is encoded once and published, with epoch and seq, to
//     firegate.feed.<hash>, in order, each publish expecting the subject's
//     previous stream sequence (a deposed owner cannot interleave). The
//     stream's per-subject message count and age are the replay buffer.
//   - A mirror asks the owner for its state (visible set, seq, replay
//     history) by request-reply, then applies the subject's messages after
//     that seq from an ordered consumer. A gap (the stream no longer holds
//     the next seq) is repaired by asking for the state again; the Feed
//     turns it into one `changes` message, never a snapshot.
//   - A mirror watches the lease; when it lapses (owner dead) or is
//     released (drain, the owner's linger ended), the mirror takes it,
//     applies what the stream still holds, starts the inner listener, and
//     its Feed diffs the fresh result against the mirrored set and
//     continues the same epoch with the next seq.
//   - A mirror declares its interest in the Feed (interest.go); the owner
//     keeps its listener while any other instance is interested, and stops
//     one linger after the last subscriber fleet-wide left.
//   - The lease value also carries a hash of the Feed's tenant. Each
//     instance watches the lease bucket (view.go) and answers the Hub's
//     FleetFeeds (subscriptions.FleetLimiter) from it, so that
//     MaxFeedsPerTenant holds across the fleet.
//   - When NATS is unreachable, Feeds run the inner listener locally
//     (degraded; metric fleet_degraded, Status, a log line). A degraded Feed
//     moves its seq far ahead once (so a resume elsewhere can never be
//     served a net change from another instance's history) and rejoins the
//     fleet when NATS is back if its position allows it.
//
// A Source is safe for concurrent use.
package fleet

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"

	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

// Config configures New. URL and Inner are required; every zero field takes
// the default its comment names.
type Config struct {
	// URL is the NATS server URL list (FIREGATE_NATS_URL).
	URL string
	// Inner is the real upstream (the Firestore source).
	Inner subscriptions.Source
	// Instance names this instance in leases; "" → a random id.
	Instance string
	// LeaseTTL is how long a lease outlives its owner's last renewal: the
	// longest a Feed goes without an owner when its owner dies. 0 → 3s.
	LeaseTTL time.Duration
	// ReplayCount and ReplayAge are the stream's per-subject limits (the
	// fleet's replay buffer). 0 → 1024 and 5m.
	ReplayCount int
	ReplayAge   time.Duration
	// RequestTimeout bounds one state request to an owner. 0 → 2s.
	RequestTimeout time.Duration
	// Replicas of the stream and the bucket (NATS cluster). 0 → 1.
	Replicas int
	// Metrics receives the fleet metrics; nil → metrics.New(nil).
	Metrics *metrics.Metrics
	// Logger; nil discards.
	Logger *slog.Logger
	// Options are extra nats.Connect options (tests).
	Options []nats.Option
}

// Names in NATS.
const (
	streamName    = "FIREGATE_FEEDS"
	bucketName    = "firegate_leases"
	subjectPrefix = "firegate.feed."
	statePrefix   = "firegate.state."
	hdrEpoch      = "Firegate-Epoch"
)

// Source is the fleet-aware subscriptions.FleetSource. See the package
// comment.
type Source struct {
	cfg   Config
	inner subscriptions.Source
	m     *metrics.Metrics
	log   *slog.Logger
	nc    *nats.Conn
	js    jetstream.JetStream

	mu     sync.Mutex
	kv     jetstream.KeyValue   // nil until the stream and bucket are set up; guarded by mu
	leases map[string]leaseHold // leases acquired by FeedEpoch, taken by ListenFeed; guarded by mu
	roles  map[string]metrics.FleetRole
	// Interest (interest.go), guarded by mu: the interest bucket, whether
	// another instance is interested in each owned Feed, and how often
	// the Hub asked (tests).
	ikv          jetstream.KeyValue
	interest     map[string]bool
	askedAt      map[string]time.Time // last state request per owned Feed
	interestAsks uint64

	// view follows the lease bucket for the fleet-wide per-tenant cap
	// (view.go; FleetFeeds).
	view *leaseView

	degraded atomic.Bool
	closed   atomic.Bool
}

// leaseHold is a lease acquired for a Feed that has not started yet.
type leaseHold struct {
	rev uint64
	val []byte // the lease value, renewed unchanged
	at  time.Time
}

// lease is the value stored under a Feed's lease key. Session is fresh for
// every acquisition and the same for all renewals of it: a mirror that sees
// it change knows a new owner session started and asks that owner for its
// state ("" from an instance that predates it: no such check).
type lease struct {
	Owner   string `json:"owner"`
	Epoch   string `json:"epoch"`
	Session string `json:"session,omitempty"`
	// Tenant is tenantHash of the Feed's tenant, for the fleet-wide
	// per-tenant cap ("" from an instance that predates it: counts for no
	// tenant).
	Tenant string `json:"t,omitempty"`
}

// leaseValue returns a new lease value of this instance for epoch and
// tenant.
func (s *Source) leaseValue(epoch, tenant string) []byte {
	val, _ := json.Marshal(lease{Owner: s.cfg.Instance, Epoch: epoch, Session: randomID(), Tenant: tenantHash(tenant)})
	return val
}

// leaseSession returns the Session of a lease value ("" if malformed).
func leaseSession(val []byte) string {
	var l lease
	_ = json.Unmarshal(val, &l)
	return l.Session
}

// ErrClosed is returned by ListenFeed after Close.
var ErrClosed = errors.New("fleet: source closed")

// errDegraded says NATS is unreachable.
var errDegraded = errors.New("fleet: NATS unreachable")

// New connects to NATS (retrying in the background when it is unreachable:
// the Source then starts degraded) and returns the Source.
func New(cfg Config) (*Source, error) {
	if cfg.URL == "" {
		return nil, errors.New("failed to start fleet mode: empty NATS URL")
	}
	if cfg.Inner == nil {
		return nil, errors.New("failed to start fleet mode: nil inner Source")
	}
	if cfg.LeaseTTL < 0 || cfg.ReplayCount < 0 || cfg.ReplayAge < 0 || cfg.RequestTimeout < 0 || cfg.Replicas < 0 {
		return nil, errors.New("failed to start fleet mode: negative setting")
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 3 * time.Second
	}
	if cfg.ReplayCount == 0 {
		cfg.ReplayCount = 1024
	}
	if cfg.ReplayAge == 0 {
		cfg.ReplayAge = 5 * time.Minute
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 2 * time.Second
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Instance == "" {
		cfg.Instance = randomID()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Source{
		cfg: cfg, inner: cfg.Inner, m: cfg.Metrics, log: cfg.Logger,
		leases: make(map[string]leaseHold), roles: make(map[string]metrics.FleetRole), interest: make(map[string]bool), askedAt: make(map[string]time.Time),
		view: newLeaseView(cfg.Instance, cfg.LeaseTTL),
	}
	opts := append([]nats.Option{
		nats.Name("firegate " + cfg.Instance),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			s.setDegraded(true, err)
		}),
		nats.ReconnectHandler(func(*nats.Conn) { s.setDegraded(false, nil) }),
		nats.ConnectHandler(func(*nats.Conn) { s.setDegraded(false, nil) }),
	}, cfg.Options...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("failed to connect to NATS: %w", err)
	}
	s.nc = nc
	if !nc.IsConnected() {
		s.setDegraded(true, errDegraded)
	}
	s.js, err = jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("failed to open JetStream: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.RequestTimeout)
	defer cancel()
	if _, err := s.bucket(ctx); err != nil && !errors.Is(err, errDegraded) {
		s.log.Warn("fleet: JetStream setup failed; retrying on use", "error", err)
	}
	return s, nil
}

// Close closes the NATS connection. Close the Hub first: its Feeds release
// their leases as they stop.
func (s *Source) Close() {
	if s.closed.Swap(true) {
		return
	}
	s.view.stop()
	s.nc.Close()
}

// Instance returns this instance's id in leases.
func (s *Source) Instance() string { return s.cfg.Instance }

// Status describes fleet mode for /readyz details: "fleet: connected" or
// "fleet: degraded (NATS unreachable; local listeners)".
func (s *Source) Status() string {
	if s.degraded.Load() {
		return "fleet: degraded (NATS unreachable; Feeds run local listeners)"
	}
	return "fleet: connected"
}

// Degraded reports whether NATS is unreachable.
func (s *Source) Degraded() bool { return s.degraded.Load() }

func (s *Source) setDegraded(d bool, err error) {
	if s.closed.Load() {
		return
	}
	if s.degraded.Swap(d) == d {
		return
	}
	if d {
		s.m.Fleet.Degraded.Set(1)
		s.log.Warn("fleet: NATS unreachable; new Feeds run local listeners until it returns", "error", err)
		return
	}
	s.m.Fleet.Degraded.Set(0)
	s.log.Info("fleet: NATS reachable; Feeds rejoin the fleet")
	go s.rewatch()
}

// Listen runs the inner listener (a Feed outside fleet control).
func (s *Source) Listen(ctx context.Context, q subscriptions.Query, emit func(*subscriptions.Snapshot)) error {
	return s.inner.Listen(ctx, q, emit)
}

// bucket returns the lease bucket, creating the stream and the bucket on
// first use (and again after NATS lost them).
func (s *Source) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	if !s.nc.IsConnected() {
		return nil, errDegraded
	}
	s.mu.Lock()
	kv := s.kv
	s.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	_, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              streamName,
		Subjects:          []string{subjectPrefix + "*"},
		MaxMsgsPerSubject: int64(s.cfg.ReplayCount),
		MaxAge:            s.cfg.ReplayAge,
		Storage:           jetstream.FileStorage,
		Replicas:          s.cfg.Replicas,
		Discard:           jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to create the fleet stream: %w", err)
	}
	kv, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   bucketName,
		TTL:      s.cfg.LeaseTTL,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: s.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to create the fleet lease bucket: %w", err)
	}
	s.mu.Lock()
	s.kv = kv
	s.mu.Unlock()
	s.view.watch(kv)
	return kv, nil
}

// rewatch sets the bucket up again and restarts the lease view on it
// (NATS came back; its watch may have ended or the bucket be lost).
func (s *Source) rewatch() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	s.forgetBucket()
	if _, err := s.bucket(ctx); err != nil && !errors.Is(err, errDegraded) {
		s.log.Warn("fleet: JetStream setup failed after reconnecting; retrying on use", "error", err)
	}
}

// FleetFeeds implements subscriptions.FleetLimiter from the lease view
// (view.go): the live Feeds of tenant that other instances own, except key
// and the keys in local; whether another instance owns key; ok false
// while NATS is unreachable or the view has not read the bucket. It does
// not block.
func (s *Source) FleetFeeds(tenant, key string, local []string) (others int, exists, ok bool) {
	if s.closed.Load() || s.degraded.Load() {
		return 0, false, false
	}
	loc := make(map[string]struct{}, len(local))
	for _, k := range local {
		loc[hashKey(k)] = struct{}{}
	}
	return s.view.count(tenantHash(tenant), hashKey(key), loc)
}

// forgetBucket drops the cached bucket after an error that may mean NATS
// lost it, so the next use sets it up again.
func (s *Source) forgetBucket() {
	s.mu.Lock()
	s.kv = nil
	s.mu.Unlock()
}

// hashKey is the KV key and subject token of a Feed key: Feed keys hold any
// characters; these hold [0-9a-f] only.
func hashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return "f" + hex.EncodeToString(h[:16])
}

func randomID() string {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// FeedEpoch returns the fleet-wide epoch of the Feed with key: the lease
// holder's, or a fresh one that this instance then owns (the lease, which
// carries tenant's hash, is taken here, so two instances opening a Feed at
// once agree on one epoch). With NATS unreachable it returns a fresh local
// epoch.
func (s *Source) FeedEpoch(key, tenant string) string {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	kv, err := s.bucket(ctx)
	if err != nil {
		return randomID()
	}
	hk := hashKey(key)
	for range 3 {
		if e, err := kv.Get(ctx, hk); err == nil {
			var l lease
			if json.Unmarshal(e.Value(), &l) == nil && l.Epoch != "" {
				return l.Epoch
			}
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			s.forgetBucket()
			return randomID()
		}
		epoch := randomID()
		val := s.leaseValue(epoch, tenant)
		rev, err := kv.Create(ctx, hk, val)
		if err == nil {
			s.m.Fleet.LeaseChanges[metrics.LeaseAcquired].Inc()
			s.view.put(hk, val)
			s.mu.Lock()
			s.leases[key] = leaseHold{rev: rev, val: val, at: time.Now()}
			s.mu.Unlock()
			return epoch
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			s.forgetBucket()
			return randomID()
		}
	}
	return randomID()
}

// Refused implements subscriptions.FleetLimiter: the Hub refused the Feed
// for key after FeedEpoch, so the lease FeedEpoch took for it, if any and
// not renewed since, is released at once instead of lapsing by its TTL.
func (s *Source) Refused(key string) {
	s.mu.Lock()
	h, ok := s.leases[key]
	delete(s.leases, key)
	kv := s.kv
	s.mu.Unlock()
	if !ok || kv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if kv.Delete(ctx, hashKey(key), jetstream.LastRevision(h.rev)) == nil {
		s.m.Fleet.LeaseChanges[metrics.LeaseReleased].Inc()
	}
}

// takeHold returns the lease FeedEpoch acquired for key, if any.
func (s *Source) takeHold(key string) (leaseHold, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.leases[key]
	delete(s.leases, key)
	if ok && time.Since(h.at) > s.cfg.LeaseTTL/2 {
		return leaseHold{}, false // may have lapsed: acquire again
	}
	return h, ok
}

// setRole moves a Feed between the fleet_feeds gauges and logs the
// transition at Info (the Feed's hash, epoch and seq; no document data).
// It takes the Feed's lock briefly (Seq): never call it with that lock
// held.
func (s *Source) setRole(f subscriptions.FleetFeed, role metrics.FleetRole, on bool) {
	key := f.Key()
	s.mu.Lock()
	old, had := s.roles[key]
	if had {
		s.m.Fleet.Feeds[old].Dec()
		delete(s.roles, key)
	}
	if on {
		s.roles[key] = role
		s.m.Fleet.Feeds[role].Inc()
	}
	s.mu.Unlock()
	if had == on && old == role {
		return
	}
	name := "none"
	if on {
		name = role.String()
	}
	s.log.Info("fleet: Feed role", "feed", hashKey(key), "epoch", f.Epoch(), "role", name, "seq", f.Seq())
}

// msgListenerCurrent is logged (at Info) when the Firestore listener of an
// owner or local session has delivered its first snapshot to the Feed: a
// takeover or a fall-back to a local listener is complete.
const msgListenerCurrent = "fleet: Feed listener current"

// errLeaseLost ends an owner session whose renewal failed.
var errLeaseLost = &subscriptions.UpstreamError{Code: codes.Aborted, Message: "fleet: Feed lease lost"}

// ListenFeed runs one session for the Feed: as its owner (lease held: the
// inner listener, publishing), as a mirror (fed from the stream; taking
// the lease when it lapses), or locally when NATS is unreachable. It
// returns when ctx ends, or with an error when the session's role must
// change (the Hub calls it again after its backoff).
func (s *Source) ListenFeed(ctx context.Context, f subscriptions.FleetFeed, emit func(*subscriptions.Snapshot)) error {
	if s.closed.Load() {
		return ErrClosed
	}
	key := f.Key()
	defer s.setRole(f, 0, false)
	if h, ok := s.takeHold(key); ok {
		return s.own(ctx, f, h, emit)
	}
	kv, err := s.bucket(ctx)
	if err != nil {
		return s.local(ctx, f, emit)
	}
	hk := hashKey(key)
	e, err := kv.Get(ctx, hk)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		h, ok := s.acquire(ctx, kv, hk, f.Epoch(), f.Tenant())
		if ok {
			return s.own(ctx, f, h, emit)
		}
		return s.mirror(ctx, f, emit)
	case err != nil:
		s.forgetBucket()
		return s.local(ctx, f, emit)
	}
	var l lease
	if json.Unmarshal(e.Value(), &l) != nil || l.Epoch != f.Epoch() {
		// Another incarnation of this Feed owns the key (e.g. one opened
		// while this one ran degraded): this Feed cannot follow its
		// numbering, so it stays local until it closes.
		return s.local(ctx, f, emit)
	}
	return s.mirror(ctx, f, emit)
}

// acquire tries to create the lease for hk with epoch and tenant.
func (s *Source) acquire(ctx context.Context, kv jetstream.KeyValue, hk, epoch, tenant string) (leaseHold, bool) {
	val := s.leaseValue(epoch, tenant)
	rev, err := kv.Create(ctx, hk, val)
	if err != nil {
		return leaseHold{}, false
	}
	s.m.Fleet.LeaseChanges[metrics.LeaseAcquired].Inc()
	return leaseHold{rev: rev, val: val, at: time.Now()}, true
}

// own runs an owner session on the lease h: renew it, answer state
// requests, run the inner listener and publish every `changes` message of
// the Feed. A session that ends with a change applied but not published
// (its publish failed, or the lease was lost meanwhile) leaves mirrors
// behind its Feed; the next session's lease has a new Session, on which
// mirrors ask for the state again (mirror).
func (s *Source) own(ctx context.Context, f subscriptions.FleetFeed, h leaseHold, emit func(*subscriptions.Snapshot)) error {
	rev, val := h.rev, h.val
	key, epoch := f.Key(), f.Epoch()
	hk := hashKey(key)
	subj := subjectPrefix + hk
	kv, err := s.bucket(ctx)
	if err != nil {
		return s.local(ctx, f, emit)
	}
	s.setRole(f, metrics.FleetOwned, true)
	octx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// The stream sequence of the subject's last message: each publish
	// expects it, so a deposed owner's late publish fails.
	var last atomic.Uint64
	if m, err := s.lastMsg(octx, subj); err == nil {
		last.Store(m.Sequence)
	}

	// Renewal.
	var renewWG sync.WaitGroup
	renewWG.Add(1)
	go func() {
		defer renewWG.Done()
		t := time.NewTicker(s.cfg.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-octx.Done():
				return
			case <-t.C:
			}
			rctx, rcancel := context.WithTimeout(octx, s.cfg.LeaseTTL/3)
			nrev, err := kv.Update(rctx, hk, val, rev)
			rcancel()
			if octx.Err() != nil {
				return
			}
			if err != nil {
				s.m.Fleet.LeaseChanges[metrics.LeaseLost].Inc()
				s.log.Warn("fleet: lost a Feed lease; its listener stops", "feed", hk, "error", err)
				cancel(errLeaseLost)
				return
			}
			rev = nrev
		}
	}()

	// Other instances' interest keeps the Feed open here (RemoteInterest).
	go s.watchInterest(octx, key, hk)

	// State requests from new mirrors.
	sub, err := s.nc.Subscribe(statePrefix+hk, func(m *nats.Msg) {
		s.mu.Lock()
		s.askedAt[key] = time.Now() // a new mirror is interested
		s.mu.Unlock()
		st, ok := f.State()
		if !ok {
			_ = m.Respond(encodeStateError("no state yet"))
			return
		}
		_ = m.Respond(encodeState(epoch, st))
	})
	if err == nil {
		defer sub.Unsubscribe()
	}

	// Publishing: the Feed hands each message over under its lock; one
	// goroutine publishes them in order.
	pubs := make(chan []byte, 4096)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for data := range pubs {
			if octx.Err() != nil {
				continue
			}
			msg := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{hdrEpoch: []string{epoch}}}
			pctx, pcancel := context.WithTimeout(octx, s.cfg.RequestTimeout)
			ack, err := s.js.PublishMsg(pctx, msg, jetstream.WithExpectLastSequencePerSubject(last.Load()))
			pcancel()
			if err != nil {
				if octx.Err() == nil {
					s.log.Warn("fleet: publishing a change batch failed; giving the Feed up", "feed", hk, "error", err)
					cancel(errLeaseLost)
				}
				continue
			}
			last.Store(ack.Sequence)
		}
	}()
	published := func(seq uint64, readTime time.Time, changes []wire.Change) {
		data := encodeBatch(epoch, seq, readTime, time.Now(), changes)
		select {
		case pubs <- data:
		case <-octx.Done():
		}
	}
	s.m.ListenersStarted.Inc()
	current := false
	err = s.inner.Listen(octx, f.Query(), func(snap *subscriptions.Snapshot) {
		snap.Published = published
		emit(snap)
		if !current {
			current = true
			s.log.Info(msgListenerCurrent, "feed", hk, "epoch", epoch, "role", metrics.FleetOwned.String())
		}
	})
	cause := context.Cause(octx)
	cancel(nil)
	renewWG.Wait()
	close(pubs)
	<-pubDone
	if cause == errLeaseLost {
		return errLeaseLost
	}
	// Release: the Feed closed, the listener failed, or the instance
	// drains. A mirror with interest takes the lease at once.
	dctx, dcancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	if kv.Delete(dctx, hk, jetstream.LastRevision(rev)) == nil {
		s.m.Fleet.LeaseChanges[metrics.LeaseReleased].Inc()
	}
	dcancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// lastMsg returns the stream's last message on subj.
func (s *Source) lastMsg(ctx context.Context, subj string) (*jetstream.RawStreamMsg, error) {
	st, err := s.js.Stream(ctx, streamName)
	if err != nil {
		return nil, err
	}
	return st.GetLastMsgForSubject(ctx, subj)
}

// errResync asks the mirror loop to fetch the owner's state again.
var errResync = errors.New("fleet: mirror out of sync")

// mirror runs a mirror session: state from the owner, then the stream;
// takes the lease when it lapses.
func (s *Source) mirror(ctx context.Context, f subscriptions.FleetFeed, emit func(*subscriptions.Snapshot)) error {
	key, epoch := f.Key(), f.Epoch()
	hk := hashKey(key)
	subj := subjectPrefix + hk
	kv, err := s.bucket(ctx)
	if err != nil {
		return s.local(ctx, f, emit)
	}
	s.setRole(f, metrics.FleetMirrored, true)
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.declareInterest(mctx, hk)

	cons, err := s.js.OrderedConsumer(mctx, streamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj}, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		s.forgetBucket()
		return &subscriptions.UpstreamError{Code: codes.Unavailable, Message: "fleet: " + err.Error()}
	}
	it, err := cons.Messages()
	if err != nil {
		return &subscriptions.UpstreamError{Code: codes.Unavailable, Message: "fleet: " + err.Error()}
	}
	defer it.Stop()

	// Messages flow through a channel so that the lease watch and the
	// stream share one loop.
	type item struct {
		b    *batch
		snap *subscriptions.Snapshot
		err  error
	}
	msgs := make(chan item, 64)
	go func() {
		defer close(msgs)
		for {
			m, err := it.Next(jetstream.NextContext(mctx))
			if err != nil {
				if mctx.Err() == nil {
					select {
					case msgs <- item{err: err}:
					case <-mctx.Done():
					}
				}
				return
			}
			b, snap, derr := decodeBatch(m.Data())
			if derr == nil && b.Epoch != epoch {
				derr = fmt.Errorf("%w: epoch %q, want %q", errBadMessage, b.Epoch, epoch)
			}
			if derr != nil {
				s.log.Warn("fleet: dropping a malformed change batch", "feed", hk, "error", derr)
				continue
			}
			select {
			case msgs <- item{b: b, snap: snap}:
			case <-mctx.Done():
				return
			}
		}
	}()

	// cur is the owner's seq this Feed has applied. offset maps the
	// owner's numbering to this Feed's: 0, unless this Feed ran degraded
	// and its own seq is ahead of the owner's (it never goes back), then
	// every owner seq is shifted by it. A shifted Feed's numbers are never
	// below the owner's for the same content, so a resume served by either
	// instance gets at least the changes it missed.
	var cur, offset uint64
	resync := func(rctx context.Context) error {
		r, err := s.nc.RequestWithContext(rctx, statePrefix+hk, nil)
		if err != nil {
			return err
		}
		ep, snap, err := decodeState(r.Data)
		if err != nil {
			return err
		}
		if ep != epoch {
			return fmt.Errorf("%w: owner epoch %q, want %q", errBadMessage, ep, epoch)
		}
		ownerSeq := snap.Seq
		if st, ok := f.State(); ok && ownerSeq+offset < st.Seq {
			offset = st.Seq + 1 - ownerSeq
		}
		snap.Seq = ownerSeq + offset
		snap.ReceivedAt = time.Now()
		s.log.Debug("fleet: mirror resync", "feed", hk, "owner_seq", ownerSeq, "offset", offset, "cur", cur, "docs", len(snap.Docs))
		emit(snap)
		cur = ownerSeq
		return nil
	}
	// session is the lease Session of the owner whose state this Feed
	// follows: read before the state request, so that an owner session
	// that starts after it is seen as a change.
	var session string
	if e, err := kv.Get(mctx, hk); err == nil {
		session = leaseSession(e.Value())
	}
	if err := s.requestState(mctx, resync); err != nil {
		if errors.Is(err, errBadMessage) {
			return s.local(ctx, f, emit)
		}
		return s.tryTakeover(ctx, mctx, f, kv, hk, emit, err)
	}
	watch := time.NewTicker(s.cfg.LeaseTTL / 3)
	defer watch.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case it, ok := <-msgs:
			if !ok {
				return &subscriptions.UpstreamError{Code: codes.Unavailable, Message: "fleet: stream consumer ended"}
			}
			if it.err != nil {
				if !s.nc.IsConnected() {
					return s.local(ctx, f, emit)
				}
				return &subscriptions.UpstreamError{Code: codes.Unavailable, Message: "fleet: " + it.err.Error()}
			}
			if it.b.Seq <= cur {
				continue
			}
			if it.b.Seq > cur+1 {
				// The stream no longer holds cur+1: ask the owner.
				rctx, rcancel := context.WithTimeout(mctx, s.cfg.RequestTimeout)
				err := resync(rctx)
				rcancel()
				if err != nil {
					return &subscriptions.UpstreamError{Code: codes.Unavailable, Message: "fleet: resync failed: " + err.Error()}
				}
				if it.b.Seq <= cur {
					continue
				}
				if it.b.Seq > cur+1 {
					continue // the owner is ahead of its stream; later messages follow
				}
			}
			now := time.Now()
			if it.b.At != 0 {
				s.m.Fleet.StreamLag.Observe(max(0, now.Sub(time.Unix(0, it.b.At)).Seconds()))
			}
			it.snap.ReceivedAt = now
			it.snap.Seq += offset
			emit(it.snap)
			cur = it.b.Seq
		case <-watch.C:
			if !s.nc.IsConnected() {
				return s.local(ctx, f, emit)
			}
			gctx, gcancel := context.WithTimeout(mctx, s.cfg.RequestTimeout)
			e, err := kv.Get(gctx, hk)
			gcancel()
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				if h, ok := s.acquire(mctx, kv, hk, epoch, f.Tenant()); ok {
					if err := s.drain(mctx, subj, epoch, &cur, offset, emit); err != nil {
						s.log.Warn("fleet: catching up before a takeover failed; the fresh listener's diff covers it", "feed", hk, "error", err)
					}
					cancel()
					s.log.Info("fleet: took over a Feed whose owner left", "feed", hk)
					return s.own(ctx, f, h, emit)
				}
			}
			if err == nil && leaseSession(e.Value()) != session {
				// A new owner session: the previous one may have applied
				// changes it never published (the stream does not hold
				// them, and the new owner's listener diffs against a set
				// that already has them). Its state has them.
				next := leaseSession(e.Value())
				rctx, rcancel := context.WithTimeout(mctx, s.cfg.RequestTimeout)
				err := resync(rctx)
				rcancel()
				if err != nil {
					return &subscriptions.UpstreamError{Code: codes.Unavailable, Message: "fleet: resync with a new owner failed: " + err.Error()}
				}
				session = next
			}
		}
	}
}

// requestState calls resync until it succeeds, its failure is final (a
// malformed or foreign state), no owner answers (then it returns the
// error, for a takeover), or about two request timeouts have passed (the
// owner may still await its first snapshot).
func (s *Source) requestState(ctx context.Context, resync func(context.Context) error) error {
	deadline := time.Now().Add(2 * s.cfg.RequestTimeout)
	for {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		err := resync(rctx)
		cancel()
		if err == nil || errors.Is(err, errBadMessage) || errors.Is(err, nats.ErrNoResponders) ||
			ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(time.Duration(20+rand.IntN(60)) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// tryTakeover handles a mirror that found no owner to ask: it takes the
// lease if it is free, else retries later as a mirror.
func (s *Source) tryTakeover(ctx, mctx context.Context, f subscriptions.FleetFeed, kv jetstream.KeyValue, hk string, emit func(*subscriptions.Snapshot), cause error) error {
	if _, err := kv.Get(mctx, hk); errors.Is(err, jetstream.ErrKeyNotFound) {
		if h, ok := s.acquire(mctx, kv, hk, f.Epoch(), f.Tenant()); ok {
			return s.own(ctx, f, h, emit)
		}
	}
	return &subscriptions.UpstreamError{Code: codes.Unavailable, Message: "fleet: no owner answered: " + cause.Error()}
}

// drain applies what the stream holds after cur (the departed owner's last
// batches) before this instance starts its own listener.
func (s *Source) drain(ctx context.Context, subj, epoch string, cur *uint64, offset uint64, emit func(*subscriptions.Snapshot)) error {
	m, err := s.lastMsg(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	b, _, err := decodeBatch(m.Data)
	if err != nil || b.Epoch != epoch || b.Seq <= *cur {
		return err
	}
	// Read the subject forwards from the first message after cur.
	cons, err := s.js.OrderedConsumer(ctx, streamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj}, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return err
	}
	for *cur < b.Seq {
		msg, err := cons.Next(jetstream.FetchMaxWait(s.cfg.RequestTimeout))
		if err != nil {
			return err
		}
		mb, snap, err := decodeBatch(msg.Data())
		if err != nil || mb.Epoch != epoch || mb.Seq <= *cur {
			continue
		}
		if mb.Seq > *cur+1 {
			return fmt.Errorf("%w: stream gap %d..%d", errResync, *cur, mb.Seq)
		}
		snap.ReceivedAt = time.Now()
		snap.Seq += offset
		emit(snap)
		*cur = mb.Seq
	}
	return nil
}

// degradedJump returns how far a degraded Feed moves its seq once: a
// random distance of at least 2^32, so that its local numbering overlaps
// neither the fleet's nor another degraded instance's.
func degradedJump() uint64 { return 1<<32 + rand.Uint64N(1<<40) }

// local runs the inner listener on this instance alone (NATS unreachable,
// or a Feed that cannot rejoin the fleet). Its first message jumps the seq
// (see degradedJump). When NATS is reachable again it ends with an error so
// the next session rejoins the fleet.
func (s *Source) local(ctx context.Context, f subscriptions.FleetFeed, emit func(*subscriptions.Snapshot)) error {
	s.setRole(f, metrics.FleetLocal, true)
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rejoin := errors.New("fleet: NATS reachable again; rejoining the fleet")
	go func() {
		t := time.NewTicker(s.cfg.LeaseTTL)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
				if s.nc.IsConnected() && s.canRejoin(lctx, f) {
					cancel(rejoin)
					return
				}
			}
		}
	}()
	first := true
	s.m.ListenersStarted.Inc()
	err := s.inner.Listen(lctx, f.Query(), func(snap *subscriptions.Snapshot) {
		if first {
			first = false
			if st, ok := f.State(); ok {
				snap.Seq = st.Seq + degradedJump()
			}
			emit(snap)
			s.log.Info(msgListenerCurrent, "feed", hashKey(f.Key()), "epoch", f.Epoch(), "role", metrics.FleetLocal.String(), "seq", snap.Seq)
			return
		}
		emit(snap)
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if context.Cause(lctx) == rejoin {
		return &subscriptions.UpstreamError{Code: codes.Unavailable, Message: rejoin.Error()}
	}
	return err
}

// canRejoin reports whether a local Feed can rejoin the fleet: no lease
// (it will take it) or a lease with its epoch (it mirrors, shifting the
// owner's numbering if it is ahead).
func (s *Source) canRejoin(ctx context.Context, f subscriptions.FleetFeed) bool {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	kv, err := s.bucket(rctx)
	if err != nil {
		return false
	}
	e, err := kv.Get(rctx, hashKey(f.Key()))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return true
	}
	if err != nil {
		return false
	}
	var l lease
	return json.Unmarshal(e.Value(), &l) == nil && l.Epoch == f.Epoch()
}
