package subscriptions

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firegate/firegate/wire"
)

// FeedsPerConn is how many listeners the Firestore source puts on one gRPC
// connection. grpc-go blocks every new RPC on a connection (listeners, Gets,
// writes alike) once it carries the server's limit of 100 concurrent
// streams; 90 leaves room for the other RPCs.
const FeedsPerConn = 90

// DefaultMaxFeeds is the Feed cap when none is configured: the Hub's
// HubConfig.MaxFeeds and the pool size of FirestoreConfig.MaxFeeds, which
// must agree.
const DefaultMaxFeeds = 1000

// pingTimeout bounds Ping when its context has no deadline.
const pingTimeout = 5 * time.Second

// pingDoc is the document Ping reads; it need not exist.
const pingDoc = "_firegate/ping"

// FirestoreConfig configures NewFirestoreSource. Only ProjectID is
// required.
type FirestoreConfig struct {
	// ProjectID is the Google Cloud project; required, also with an
	// emulator.
	ProjectID string
	// DatabaseID names the database; "" → "(default)".
	DatabaseID string
	// MaxFeeds is the Feed cap the pool is sized for: the source opens
	// ceil(MaxFeeds/FeedsPerConn) clients, one gRPC connection each, and
	// puts each listener on the least loaded. It does not refuse listeners
	// past the cap (the Hub enforces it); they are spread over the same
	// connections. 0 → DefaultMaxFeeds; negative is an error.
	MaxFeeds int
	// ClientOptions are passed to every firestore client (tests, custom
	// credentials). An option.WithGRPCConnectionPool here multiplies the
	// connections of each client.
	ClientOptions []option.ClientOption
	// Logger receives listener lifecycle events at debug level; nil
	// discards.
	Logger *slog.Logger
	// HealthInterval is how often the source pings Firestore. When a ping
	// succeeds after one or more failed, every running listener is ended
	// with Unavailable, so its Feed rebuilds it and diffs the fresh result
	// against what it delivered: a listen stream that the client library
	// resumes by itself after an outage may otherwise keep documents that
	// vanished meanwhile (seen with the emulator after a restart). Costs one
	// read per interval, and one full read per Feed per outage.
	// 0 → DefaultHealthInterval; negative disables the check (Health then
	// always reports healthy).
	HealthInterval time.Duration
	// UnhealthyAfter and UnhealthyWindow are Health's hysteresis: it
	// reports Firestore unreachable only after at least UnhealthyAfter
	// consecutive failed health checks spanning at least UnhealthyWindow
	// (from the first failure to the latest), so a short blip does not
	// make every instance unready at once. One successful check makes it
	// healthy again. 0 → 3 checks and 10 s.
	UnhealthyAfter  int
	UnhealthyWindow time.Duration
}

// DefaultHealthInterval is FirestoreConfig.HealthInterval's default.
const DefaultHealthInterval = 2 * time.Second

// Defaults of FirestoreConfig.UnhealthyAfter and UnhealthyWindow.
const (
	DefaultUnhealthyAfter  = 3
	DefaultUnhealthyWindow = 10 * time.Second
)

// FirestoreSource implements Source with the cloud.google.com/go/firestore
// client's Query.Snapshots: one Listen gRPC stream per listener.
// FIRESTORE_EMULATOR_HOST is honoured exactly as the client library does
// (plaintext, owner credentials, any project id).
//
// Connection pool: the client library ignores option.WithGRPCConnectionPool
// when FIRESTORE_EMULATOR_HOST is set (it dials one connection itself and
// passes it with option.WithGRPCConn, which forces a pool of one), and in
// production its pool balances per RPC rather than per stream. So the
// source holds a pool of clients instead, each with its own connection, and
// assigns every listener to the client with the fewest active listeners;
// that bounds the streams per connection in both cases.
//
// A FirestoreSource is safe for concurrent use. mu guards the per-client
// listener counts and closed; clients is fixed after construction.
type FirestoreSource struct {
	log     *slog.Logger
	prefix  string // "projects/P/databases/D/documents/"
	clients []*pooledClient

	mu        sync.Mutex
	closed    bool
	listeners map[uint64]context.CancelCauseFunc // running listeners; guarded by mu
	nextID    uint64                             // guarded by mu

	health    healthState   // the health monitor's verdict, with hysteresis
	pings     atomic.Uint64 // Ping calls (each one billed read)
	stop      chan struct{} // closed by Close: stops the health monitor
	monitorWG sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

type pooledClient struct {
	c      *firestore.Client
	active int // listeners on this client; guarded by FirestoreSource.mu
}

// NewFirestoreSource validates cfg and creates the client pool. It does not
// contact Firestore (use Ping for that).
func NewFirestoreSource(ctx context.Context, cfg FirestoreConfig) (*FirestoreSource, error) {
	if cfg.ProjectID == "" {
		return nil, errors.New("failed to create the firestore source: ProjectID is required")
	}
	if cfg.MaxFeeds < 0 {
		return nil, fmt.Errorf("failed to create the firestore source: MaxFeeds %d is negative", cfg.MaxFeeds)
	}
	if cfg.MaxFeeds == 0 {
		cfg.MaxFeeds = DefaultMaxFeeds
	}
	db := cfg.DatabaseID
	if db == "" {
		db = firestore.DefaultDatabaseID
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	n := (cfg.MaxFeeds + FeedsPerConn - 1) / FeedsPerConn
	s := &FirestoreSource{
		log:       log,
		prefix:    "projects/" + cfg.ProjectID + "/databases/" + db + "/documents/",
		listeners: make(map[uint64]context.CancelCauseFunc),
		stop:      make(chan struct{}),
	}
	for i := 0; i < n; i++ {
		c, err := firestore.NewClientWithDatabase(ctx, cfg.ProjectID, db, cfg.ClientOptions...)
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("failed to create firestore client: %w", err)
		}
		s.clients = append(s.clients, &pooledClient{c: c})
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.UnhealthyAfter < 0 || cfg.UnhealthyWindow < 0 {
		_ = s.Close()
		return nil, errors.New("failed to create the firestore source: negative UnhealthyAfter or UnhealthyWindow")
	}
	s.health.after = cmp.Or(cfg.UnhealthyAfter, DefaultUnhealthyAfter)
	s.health.window = cmp.Or(cfg.UnhealthyWindow, DefaultUnhealthyWindow)
	if cfg.HealthInterval > 0 {
		s.monitorWG.Add(1)
		go s.monitor(cfg.HealthInterval)
	}
	log.Debug("firestore source ready", "project", cfg.ProjectID, "database", db, "connections", n)
	return s, nil
}

// monitor pings Firestore every interval and rebuilds every listener when
// it becomes reachable again after an outage.
func (s *FirestoreSource) monitor(interval time.Duration) {
	defer s.monitorWG.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	down := false
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(interval, time.Second))
		err := s.Ping(ctx)
		cancel()
		s.health.observe(err, time.Now())
		switch {
		case err != nil && !down:
			down = true
			s.log.Warn("firestore unreachable", "err", err)
		case err == nil && down:
			down = false
			n := s.rebuildAll()
			s.log.Warn("firestore reachable again; rebuilding listeners", "listeners", n)
		}
	}
}

// rebuildAll ends every running listener with Unavailable (its Feed
// retries and diffs) and reports how many.
func (s *FirestoreSource) rebuildAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	cause := &UpstreamError{Code: codes.Unavailable, Message: "firestore was unreachable; listener rebuilt"}
	for _, cancel := range s.listeners {
		cancel(cause)
	}
	return len(s.listeners)
}

// Client returns the first client of the pool, for seeding data and for
// writes in dev mode. It must not be closed by the caller.
func (s *FirestoreSource) Client() *firestore.Client { return s.clients[0].c }

// Conns is the number of clients (gRPC connections) in the pool.
func (s *FirestoreSource) Conns() int { return len(s.clients) }

// Close closes every client; running listeners end with an *UpstreamError
// and later ones fail at once. Idempotent.
func (s *FirestoreSource) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.monitorWG.Wait()
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		var errs []error
		for _, pc := range s.clients {
			if err := pc.c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("failed to close firestore clients: %w", err)
		}
	})
	return s.closeErr
}

// Health reports the health monitor's verdict on the Firestore connection
// the listeners use, without any Firestore call (readiness probes may call
// it as often as they like): nil, or an error once the last
// UnhealthyAfter or more health checks failed over at least
// UnhealthyWindow. Always nil when the monitor is disabled.
func (s *FirestoreSource) Health() error { return s.health.verdict() }

// Pings is how many Ping calls (one billed read each) the source made.
func (s *FirestoreSource) Pings() uint64 { return s.pings.Load() }

// healthState is the health monitor's record: consecutive failures and
// when the first of them happened. Safe for concurrent use: mu guards the
// mutable fields; after and window are set before the monitor starts.
type healthState struct {
	after  int
	window time.Duration

	mu      sync.Mutex
	fails   int
	first   time.Time // the first of the current run of failures
	last    time.Time // the latest failure
	lastErr error
}

// observe records one health check's result at now.
func (h *healthState) observe(err error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.fails, h.lastErr = 0, nil
		return
	}
	if h.fails == 0 {
		h.first = now
	}
	h.fails++
	h.last, h.lastErr = now, err
}

// verdict is nil unless at least after consecutive checks failed over at
// least window.
func (h *healthState) verdict() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fails == 0 || h.fails < h.after || h.last.Sub(h.first) < h.window {
		return nil
	}
	return fmt.Errorf("%d consecutive health checks failed over %s: %w", h.fails, h.last.Sub(h.first).Round(time.Millisecond), h.lastErr)
}

// Ping is a cheap probe: it reads one document that need not exist (one
// billed read). Without a deadline on ctx it gives up after 5 s. The
// health monitor calls it every HealthInterval; readiness uses Health.
func (s *FirestoreSource) Ping(ctx context.Context) error {
	s.pings.Add(1)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pingTimeout)
		defer cancel()
	}
	_, err := s.clients[0].c.Doc(pingDoc).Get(ctx)
	if err == nil || status.Code(err) == codes.NotFound {
		return nil
	}
	return fmt.Errorf("failed to ping firestore: %w", err)
}

func (s *FirestoreSource) acquire() (*pooledClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, &UpstreamError{Code: codes.Unavailable, Message: "firestore source is closed"}
	}
	best := s.clients[0]
	for _, pc := range s.clients[1:] {
		if pc.active < best.active {
			best = pc
		}
	}
	best.active++
	return best, nil
}

func (s *FirestoreSource) release(pc *pooledClient) {
	s.mu.Lock()
	pc.active--
	s.mu.Unlock()
}

// loads returns the active listeners per client (tests).
func (s *FirestoreSource) loads() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int, len(s.clients))
	for i, pc := range s.clients {
		out[i] = pc.active
	}
	return out
}

// Listen implements Source. It runs q as a Firestore snapshot listener
// until ctx is cancelled (returning ctx.Err()) or the listener fails
// (returning an *UpstreamError with the gRPC code; a query the client
// cannot even build, such as a bad field path or operator, is
// InvalidArgument). Transient stream errors are retried inside the client
// library and never surface. The first snapshot is Reset with every
// document in query order; each later one carries the changes in the
// library's order (removed, then added, then modified).
func (s *FirestoreSource) Listen(ctx context.Context, q Query, emit func(*Snapshot)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	pc, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release(pc)

	fq, err := buildFirestoreQuery(pc.c, q)
	if err != nil {
		return &UpstreamError{Code: codes.InvalidArgument, Message: err.Error()}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.mu.Lock()
	id := s.nextID
	s.nextID++
	s.listeners[id] = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, id)
		s.mu.Unlock()
	}()
	it := fq.Snapshots(ctx)
	// Stop must not run concurrently with Next: it runs here, after Next
	// has returned.
	defer it.Stop()

	s.log.Debug("firestore listener opened", "collection", q.Collection)
	first := true
	for {
		qs, err := nextQuerySnapshot(it)
		received := time.Now()
		if err != nil {
			err = s.listenError(ctx, err, first)
			s.log.Debug("firestore listener ended", "collection", q.Collection, "err", err)
			return err
		}
		snap, err := s.convert(qs, first)
		if err != nil {
			return err
		}
		snap.ReceivedAt = received
		first = false
		emit(snap)
	}
}

// nextQuerySnapshot calls it.Next, turning a panic of the client library's internal
// assertions into an error so that one bad stream cannot crash the gateway.
func nextQuerySnapshot(it *firestore.QuerySnapshotIterator) (qs *firestore.QuerySnapshot, err error) {
	defer func() {
		if r := recover(); r != nil {
			qs, err = nil, &UpstreamError{Code: codes.Internal, Message: fmt.Sprintf("firestore client failed: %v", r)}
		}
	}()
	return it.Next()
}

func (s *FirestoreSource) listenError(ctx context.Context, err error, first bool) error {
	if cerr := ctx.Err(); cerr != nil {
		var ue *UpstreamError
		if errors.As(context.Cause(ctx), &ue) {
			return ue // rebuilt by the health monitor
		}
		return cerr
	}
	var ue *UpstreamError
	if errors.As(err, &ue) {
		return ue
	}
	if errors.Is(err, iterator.Done) {
		return &UpstreamError{Code: codes.Unavailable, Message: "firestore listen stream ended"}
	}
	if st, ok := status.FromError(err); ok {
		return &UpstreamError{Code: st.Code(), Message: st.Message()}
	}
	if first {
		// The client library failed before talking to Firestore: the query
		// itself is malformed (e.g. an invalid field path).
		return &UpstreamError{Code: codes.InvalidArgument, Message: err.Error()}
	}
	return &UpstreamError{Code: codes.Internal, Message: err.Error()}
}

// convert builds a Snapshot from a QuerySnapshot. DocumentSnapshot.Data
// panics on values the client cannot decode; that becomes an Internal
// UpstreamError instead of a crash.
func (s *FirestoreSource) convert(qs *firestore.QuerySnapshot, reset bool) (snap *Snapshot, err error) {
	defer func() {
		if r := recover(); r != nil {
			snap, err = nil, &UpstreamError{Code: codes.Internal, Message: fmt.Sprintf("failed to decode a document: %v", r)}
		}
	}()
	snap = &Snapshot{Reset: reset, ReadTime: qs.ReadTime}
	if reset {
		docs, err := qs.Documents.GetAll()
		if err != nil {
			return nil, &UpstreamError{Code: codes.Internal, Message: err.Error()}
		}
		snap.Docs = make([]Document, len(docs))
		for i, ds := range docs {
			snap.Docs[i] = s.document(ds, true)
		}
		return snap, nil
	}
	snap.Changes = make([]Change, 0, len(qs.Changes))
	for _, ch := range qs.Changes {
		var c Change
		switch ch.Kind {
		case firestore.DocumentAdded:
			c = Change{Kind: Added, Doc: s.document(ch.Doc, true)}
		case firestore.DocumentModified:
			c = Change{Kind: Modified, Doc: s.document(ch.Doc, true)}
		case firestore.DocumentRemoved:
			c = Change{Kind: Removed, Doc: s.document(ch.Doc, false)}
		default:
			continue
		}
		snap.Changes = append(snap.Changes, c)
	}
	return snap, nil
}

func (s *FirestoreSource) document(ds *firestore.DocumentSnapshot, withData bool) Document {
	path, ok := strings.CutPrefix(ds.Ref.Path, s.prefix)
	if !ok {
		path = relativePath(ds.Ref.Path)
	}
	d := Document{ID: ds.Ref.ID, Path: path}
	if withData {
		d.Data = dataToJSONInPlace(ds.Data())
		d.UpdateTime = ds.UpdateTime
	}
	return d
}

// firestoreOps maps wire operators to the firestore client's; they are the same
// strings, listed so that nothing else reaches the client.
var firestoreOps = map[string]string{
	"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
	"in": "in", "not-in": "not-in",
	"array-contains": "array-contains", "array-contains-any": "array-contains-any",
}

// buildFirestoreQuery turns a Query into a firestore.Query on c. Field names are
// dot-separated field paths ("address.city"), as in the client library.
func buildFirestoreQuery(c *firestore.Client, q Query) (firestore.Query, error) {
	if !validCollectionPath(q.Collection) {
		return firestore.Query{}, fmt.Errorf("invalid collection path %q", q.Collection)
	}
	coll := c.Collection(q.Collection)
	if coll == nil {
		return firestore.Query{}, fmt.Errorf("invalid collection path %q", q.Collection)
	}
	fq := coll.Query
	if q.Doc != "" {
		ref := coll.Doc(q.Doc)
		if ref == nil {
			return firestore.Query{}, fmt.Errorf("invalid document id %q", q.Doc)
		}
		fq = fq.WherePath(firestore.FieldPath{firestore.DocumentID}, "==", ref)
	}
	for _, f := range q.Filters {
		pf, err := propertyFilter(f)
		if err != nil {
			return firestore.Query{}, err
		}
		fq = fq.WhereEntity(pf)
	}
	if len(q.Or) > 0 {
		or := firestore.OrFilter{Filters: make([]firestore.EntityFilter, 0, len(q.Or))}
		for _, conj := range q.Or {
			and := firestore.AndFilter{Filters: make([]firestore.EntityFilter, 0, len(conj))}
			for _, f := range conj {
				pf, err := propertyFilter(f)
				if err != nil {
					return firestore.Query{}, err
				}
				and.Filters = append(and.Filters, pf)
			}
			if len(and.Filters) == 1 {
				or.Filters = append(or.Filters, and.Filters[0])
			} else {
				or.Filters = append(or.Filters, and)
			}
		}
		fq = fq.WhereEntity(or)
	}
	for _, o := range q.OrderBy {
		var dir firestore.Direction
		switch o.Direction {
		case "", "asc":
			dir = firestore.Asc
		case "desc":
			dir = firestore.Desc
		default:
			return firestore.Query{}, fmt.Errorf("unknown direction %q on field %q", o.Direction, o.Field)
		}
		segs, err := FieldPathSegments(o.Field)
		if err != nil {
			return firestore.Query{}, fmt.Errorf("invalid field path %q: %w", o.Field, err)
		}
		fq = fq.OrderByPath(firestore.FieldPath(segs), dir)
	}
	if q.Limit < 0 {
		return firestore.Query{}, fmt.Errorf("negative limit %d", q.Limit)
	}
	if q.Limit > 0 {
		fq = fq.Limit(q.Limit)
	}
	return fq, nil
}

// propertyFilter turns one normalized filter into the client's form.
func propertyFilter(f wire.Filter) (firestore.PropertyPathFilter, error) {
	op, ok := firestoreOps[f.Op]
	if !ok {
		return firestore.PropertyPathFilter{}, fmt.Errorf("unknown operator %q on field %q", f.Op, f.Field)
	}
	segs, err := FieldPathSegments(f.Field)
	if err != nil {
		return firestore.PropertyPathFilter{}, fmt.Errorf("invalid field path %q: %w", f.Field, err)
	}
	return firestore.PropertyPathFilter{Path: firestore.FieldPath(segs), Operator: op, Value: FilterValueToFirestore(f.Value)}, nil
}

// validCollectionPath reports whether p is a collection path: an odd
// number of non-empty segments separated by "/".
func validCollectionPath(p string) bool {
	if p == "" {
		return false
	}
	n := 1
	prev := -1
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			if i == prev+1 {
				return false
			}
			prev = i
			n++
		}
	}
	return prev != len(p)-1 && n%2 == 1
}
