package revocation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
)

// DefaultCollection is the Firestore collection revocations are shared
// through. Its documents are written and read by the gateway only (clients
// never reach Firestore directly).
const DefaultCollection = "_firegate_revocations"

// Defaults of SyncConfig.
const (
	DefaultSweepInterval = time.Minute
	DefaultRetryMin      = 250 * time.Millisecond
	DefaultRetryMax      = 10 * time.Second
	sweepBatch           = 200
)

// Document fields of a revocation entry.
const (
	fieldKind    = "kind"
	fieldID      = "id"
	fieldOrgID   = "org_id"
	fieldAt      = "at"
	fieldExpires = "expires"
)

// SyncConfig configures NewSync.
type SyncConfig struct {
	// Collection is the collection path; "" means DefaultCollection.
	Collection string
	// SweepInterval is how often expired entries are deleted from the
	// collection (best-effort, by every instance); 0 means
	// DefaultSweepInterval, negative disables the sweep.
	SweepInterval time.Duration
	// Clock is the time source; nil means time.Now.
	Clock func() time.Time
	// Logger receives listener failures; nil discards.
	Logger *slog.Logger
}

// Sync shares a Store's revocations through a Firestore collection: Publish
// writes one document per revocation (its id derived from the revocation's
// Key, so retries and several instances publishing the same revocation
// write the same document) and Run keeps exactly one listener on the
// collection, adding every entry it sees to the Store (whose watchers then
// act on it). Safe for concurrent use.
type Sync struct {
	client *firestore.Client
	store  *Store
	coll   string
	sweep  time.Duration
	now    func() time.Time
	log    *slog.Logger
	synced chan struct{} // closed after the first snapshot was applied
}

// NewSync returns a Sync of store through client.
func NewSync(client *firestore.Client, store *Store, cfg SyncConfig) (*Sync, error) {
	if client == nil || store == nil {
		return nil, errors.New("failed to create revocation sync: nil client or store")
	}
	if cfg.Collection == "" {
		cfg.Collection = DefaultCollection
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sync{client: client, store: store, coll: cfg.Collection, sweep: cfg.SweepInterval,
		now: cfg.Clock, log: cfg.Logger, synced: make(chan struct{})}, nil
}

// DocID is the document id of r's entry: the hex SHA-256 of its Key.
func DocID(r Revocation) string {
	sum := sha256.Sum256([]byte(r.Key()))
	return hex.EncodeToString(sum[:])
}

// Publish writes r to the collection so that every instance's listener
// adds it. The entry expires (and may be deleted) TTL after r.At.
func (y *Sync) Publish(ctx context.Context, r Revocation) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("failed to publish revocation: %w", err)
	}
	_, err := y.client.Collection(y.coll).Doc(DocID(r)).Set(ctx, map[string]any{
		fieldKind:    string(r.Kind),
		fieldID:      r.ID,
		fieldOrgID:   r.OrgID,
		fieldAt:      r.At.UTC(), // Firestore keeps microseconds, as Store.Add does
		fieldExpires: r.At.Add(y.store.TTL()).UTC(),
	})
	if err != nil {
		return fmt.Errorf("failed to publish revocation: %w", err)
	}
	return nil
}

// Synced is closed once the listener applied its first snapshot (every
// live entry at start).
func (y *Sync) Synced() <-chan struct{} { return y.synced }

// Run listens to the collection until ctx ends, re-listening with backoff
// after errors (a failed listener's entries are re-read on the next one),
// and deletes expired entries every SweepInterval. It returns ctx's error.
func (y *Sync) Run(ctx context.Context) error {
	if y.sweep > 0 {
		var wg sync.WaitGroup
		wg.Go(func() { y.sweepLoop(ctx) })
		defer wg.Wait() // Run returns only once the sweep has stopped too
	}
	backoff := DefaultRetryMin
	for {
		start := y.now()
		err := y.listen(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if y.now().Sub(start) > DefaultRetryMax {
			backoff = DefaultRetryMin
		}
		y.log.Warn("revocation listener failed; retrying", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, DefaultRetryMax)
	}
}

// listen runs one listener on the entries not yet expired.
func (y *Sync) listen(ctx context.Context) error {
	q := y.client.Collection(y.coll).Where(fieldExpires, ">", y.now().UTC())
	it := q.Snapshots(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if err != nil {
			if errors.Is(err, iterator.Done) {
				return errors.New("revocation listener ended")
			}
			return err
		}
		for _, ch := range snap.Changes {
			if ch.Kind == firestore.DocumentRemoved {
				continue // deleted because expired; the Store expires it too
			}
			r, err := DecodeEntry(ch.Doc.Data())
			if err != nil {
				y.log.Warn("ignoring malformed revocation entry", "doc", ch.Doc.Ref.ID, "err", err)
				continue
			}
			y.store.Add(r)
		}
		select {
		case <-y.synced:
		default:
			close(y.synced)
		}
	}
}

// DecodeEntry turns an entry document's data into a Revocation. Times
// must be Firestore timestamps (time.Time); any other shape is an error.
func DecodeEntry(data map[string]any) (Revocation, error) {
	var r Revocation
	str := func(name string, optional bool) (string, error) {
		v, ok := data[name]
		if !ok || v == nil {
			if optional {
				return "", nil
			}
			return "", fmt.Errorf("%w: missing %s", ErrInvalid, name)
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%w: %s is %T, want a string", ErrInvalid, name, v)
		}
		return s, nil
	}
	kind, err := str(fieldKind, false)
	if err != nil {
		return r, err
	}
	if r.ID, err = str(fieldID, false); err != nil {
		return r, err
	}
	if r.OrgID, err = str(fieldOrgID, true); err != nil {
		return r, err
	}
	r.Kind = Kind(kind)
	at, ok := data[fieldAt].(time.Time)
	if !ok {
		return Revocation{}, fmt.Errorf("%w: %s is %T, want a timestamp", ErrInvalid, fieldAt, data[fieldAt])
	}
	r.At = at.UTC()
	if err := r.Validate(); err != nil {
		return Revocation{}, err
	}
	return r, nil
}

// sweepLoop deletes expired entries every sweep interval.
func (y *Sync) sweepLoop(ctx context.Context) {
	t := time.NewTicker(y.sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := y.Sweep(ctx); err != nil && ctx.Err() == nil {
			y.log.Warn("failed to delete expired revocation entries", "deleted", n, "err", err)
		}
		y.store.Sweep()
	}
}

// Sweep deletes up to one batch of expired entries from the collection
// and reports how many. Best-effort: several instances may sweep at once.
func (y *Sync) Sweep(ctx context.Context) (int, error) {
	docs, err := y.client.Collection(y.coll).Where(fieldExpires, "<=", y.now().UTC()).Limit(sweepBatch).Documents(ctx).GetAll()
	if err != nil {
		return 0, fmt.Errorf("failed to list expired revocations: %w", err)
	}
	n := 0
	var errs []error
	for _, d := range docs {
		if _, err := d.Ref.Delete(ctx); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("failed to delete expired revocations: %w", err)
	}
	return n, nil
}
