package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/firegate/firegate/wire"
)

// loadCollection is where the load tool's documents live: the dev policy's
// org-scoped `tasks` (scope field org_id; the filter needs visibility).
const loadCollection = "tasks"

// feedOrg is the organization of Feed f in run run: one org per Feed, so
// every Feed is a distinct (org, query) and a run never sees another's
// documents.
func feedOrg(run string, f int) string { return "org_lt" + run + "_" + strconv.Itoa(f) }

// feedUser is the user of a user slot of Feed f.
func feedUser(run string, f, slot int) string {
	return "user_lt" + run + "_" + strconv.Itoa(f) + "_" + strconv.Itoa(slot)
}

// docID is document slot k of Feed f.
func docID(run string, f, k int) string {
	return "lt" + run + "_" + strconv.Itoa(f) + "_" + strconv.Itoa(k)
}

// docData is a document as the writers commit it (and the baseline
// encodes it): the scope field, the field the dev policy's filter reads,
// the mark and padding.
func docData(org string, w, sentNS int64, padding string) map[string]any {
	return map[string]any{"org_id": org, "visibility": "public", markField: formatMark(w, sentNS), "pad": padding}
}

func padString(n int) string { return strings.Repeat("x", n) }

// padFor returns the padding that makes a subscriber's `changes` frame
// about payload bytes long (0 when the frame is already larger).
func padFor(run string, payload int) int {
	now := padRefTime
	data, _ := json.Marshal(docData(feedOrg(run, 99), 123456, now.UnixNano(), ""))
	id := docID(run, 99, 9)
	f := wire.ChangesFrame(123456, now, []wire.Change{{Kind: wire.KindModified, ID: id, Path: loadCollection + "/" + id, Data: data, UpdateTime: now.UTC().Format(time.RFC3339Nano)}})
	return max(payload-f.Len(len(quotedS1)), 0)
}

// padRefTime has nine nanosecond digits, the longest RFC 3339 form of a
// time, so padFor sizes the longest frame a write can produce (a time whose
// nanoseconds end in zeros formats shorter). With time.Now() the padding
// varied with the clock.
var padRefTime = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)

// WriteStats is the account of a writer run.
type WriteStats struct {
	PerFeed      []int64  `json:"per_feed"` // committed writes per Feed
	Errors       int64    `json:"errors"`
	Commit       Sparse   `json:"commit_latency"`
	ElapsedS     float64  `json:"elapsed_s"`
	ErrorSamples []string `json:"error_samples,omitempty"`
}

// Total is the number of committed writes.
func (s WriteStats) Total() int64 {
	var n int64
	for _, v := range s.PerFeed {
		n += v
	}
	return n
}

// Writer commits marked documents to Firestore (the emulator) through the
// Firestore client; each Feed's documents cycle through DocsPerFeed ids,
// so a Feed's result set stays that small (Google's emulator re-sends the
// whole result on every write).
type Writer struct {
	client  *firestore.Client
	run     string
	feeds   int
	docs    int
	padding string
}

// newWriter connects to the emulator at emulatorHost (it sets
// FIRESTORE_EMULATOR_HOST for this process, as the client library reads
// it from the environment).
func newWriter(ctx context.Context, emulatorHost, project, run string, feeds, docsPerFeed, pad int) (*Writer, error) {
	if err := checkLoopbackHost(emulatorHost); err != nil {
		return nil, fmt.Errorf("emulator host: %w", err)
	}
	os.Setenv("FIRESTORE_EMULATOR_HOST", emulatorHost)
	c, err := firestore.NewClient(ctx, project)
	if err != nil {
		return nil, fmt.Errorf("failed to create the Firestore client: %w", err)
	}
	return &Writer{client: c, run: run, feeds: feeds, docs: docsPerFeed, padding: padString(pad)}, nil
}

// Close closes the client.
func (w *Writer) Close() error { return w.client.Close() }

// Write commits write number seq of Feed f now.
func (w *Writer) Write(ctx context.Context, f int, seq int64) error {
	id := docID(w.run, f, int(seq%int64(w.docs)))
	_, err := w.client.Collection(loadCollection).Doc(id).Set(ctx, docData(feedOrg(w.run, f), seq, time.Now().UnixNano(), w.padding))
	return err
}

// WriteRun configures one writer run.
type WriteRun struct {
	// Rate is commits per second in total, round-robin over the Feeds;
	// 0: as fast as Concurrency writers manage (and Admit allows).
	Rate float64
	// Duration bounds the run (wall clock).
	Duration time.Duration
	// Concurrency is how many commits may be in flight; 0 → 1.
	Concurrency int
	// Feeds restricts the writes to these Feeds; nil: all of them.
	Feeds []int
	// Admit, when set, is asked before write number k (0-based, over the
	// run) is dispatched; the writer waits while it answers false (a
	// closed loop: at most so many writes not yet delivered).
	Admit func(k int64) bool
}

// Run writes at o.Rate for o.Duration and returns when that time has
// passed and every started write has finished.
func (w *Writer) Run(ctx context.Context, o WriteRun) WriteStats {
	rate, d, concurrency, feeds := o.Rate, o.Duration, o.Concurrency, o.Feeds
	if feeds == nil {
		for f := 0; f < w.feeds; f++ {
			feeds = append(feeds, f)
		}
	}
	type job struct {
		f   int
		seq int64
	}
	stats := WriteStats{PerFeed: make([]int64, w.feeds)}
	per := make([]atomic.Int64, w.feeds)
	var errs atomic.Int64
	var hist Histogram
	var mu sync.Mutex
	jobs := make(chan job)
	var wg sync.WaitGroup
	for i := 0; i < max(concurrency, 1); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				t0 := time.Now()
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := w.Write(cctx, j.f, j.seq)
				cancel()
				if err != nil {
					errs.Add(1)
					mu.Lock()
					if len(stats.ErrorSamples) < maxErrorSamples {
						stats.ErrorSamples = append(stats.ErrorSamples, err.Error())
					}
					mu.Unlock()
					continue
				}
				hist.Record(time.Since(t0))
				per[j.f].Add(1)
			}
		}()
	}
	next := make([]int64, w.feeds)
	start := time.Now()
	deadline := start.Add(d)
pace:
	for k := int64(0); ; k++ {
		var wait <-chan time.Time
		if rate > 0 {
			at := paceAt(start, k, rate)
			if at.After(deadline) {
				break
			}
			if dd := time.Until(at); dd > 0 {
				wait = time.After(dd)
			}
		}
		if time.Now().After(deadline) {
			break // behind schedule: the run is bounded in time, not count
		}
		if wait != nil {
			select {
			case <-wait:
			case <-ctx.Done():
				break pace
			}
		}
		if o.Admit != nil {
			for !o.Admit(k) {
				if time.Now().After(deadline) || ctx.Err() != nil {
					break pace
				}
				time.Sleep(200 * time.Microsecond)
			}
		}
		f := feeds[int(k%int64(len(feeds)))]
		select {
		case jobs <- job{f: f, seq: next[f]}:
			next[f]++
		case <-ctx.Done():
			break pace
		}
	}
	close(jobs)
	wg.Wait()
	stats.ElapsedS = time.Since(start).Seconds()
	for i := range per {
		stats.PerFeed[i] = per[i].Load()
	}
	stats.Errors = errs.Load()
	stats.Commit = hist.Sparse()
	return stats
}
