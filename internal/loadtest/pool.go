package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/firegate/firegate/wire"
)

// poolSpec describes subscriber connections [First, First+Count) of a
// population of Total spread over Targets. It is JSON so that a worker
// process can run a share of the population.
//
// Connection i goes to target i%len(Targets); with j = i/len(Targets) it
// subscribes to Feed j%Feeds, as user slot (j/Feeds)/ConnsPerUser of that
// Feed, whose token is Targets[t].Tokens[feed][slot].
type poolSpec struct {
	Kind            string       `json:"kind"` // KindFiregate or a baseline kind
	Targets         []poolTarget `json:"targets"`
	Total           int          `json:"total"`
	First           int          `json:"first"`
	Count           int          `json:"count"`
	Feeds           int          `json:"feeds"`
	Collection      string       `json:"collection"`
	ConnsPerUser    int          `json:"conns_per_user"`
	SourceAddrs     int          `json:"source_addrs"`
	DialConcurrency int          `json:"dial_concurrency"`
	// SlowFraction of the connections stop reading once subscribed.
	SlowFraction float64 `json:"slow_fraction"`
	// DocsPerFeed is how many document ids a writer cycles through per
	// Feed; write w goes to document w%DocsPerFeed (stale detection).
	DocsPerFeed int `json:"docs_per_feed"`
}

// poolTarget is one server of a poolSpec.
type poolTarget struct {
	WSURL  string     `json:"ws_url"`
	Tokens [][]string `json:"tokens,omitempty"` // [feed][user slot]; firegate only
}

// assign maps a connection index to (target, feed, user slot).
func (s *poolSpec) assign(i int) (target, feed, slot int) {
	n := len(s.Targets)
	j := i / n
	return i % n, j % s.Feeds, (j / s.Feeds) / s.ConnsPerUser
}

// slotsNeeded returns, per target and Feed, how many user slots (tokens)
// a population of total connections needs.
func slotsNeeded(total, targets, feeds, perUser int) [][]int {
	out := make([][]int, targets)
	for t := range out {
		out[t] = make([]int, feeds)
		count := (total - t + targets - 1) / targets // connections on target t
		for f := 0; f < feeds; f++ {
			cf := (count - f + feeds - 1) / feeds // connections of feed f on t
			if cf > 0 {
				out[t][f] = (cf + perUser - 1) / perUser
			}
		}
	}
	return out
}

func (s *poolSpec) validate() error {
	switch {
	case len(s.Targets) == 0:
		return errors.New("pool needs at least one target")
	case s.Feeds < 1:
		return errors.New("pool needs at least one feed")
	case s.ConnsPerUser < 1:
		return errors.New("conns per user must be positive")
	case s.Count < 0 || s.First < 0 || s.First+s.Count > s.Total:
		return fmt.Errorf("pool range [%d,%d) outside total %d", s.First, s.First+s.Count, s.Total)
	case s.DocsPerFeed < 1:
		return errors.New("docs per feed must be positive")
	case s.DialConcurrency < 1:
		return errors.New("dial concurrency must be positive")
	}
	if s.Kind == KindFiregate {
		need := slotsNeeded(s.Total, len(s.Targets), s.Feeds, s.ConnsPerUser)
		for t := range s.Targets {
			if len(s.Targets[t].Tokens) < s.Feeds {
				return fmt.Errorf("target %d: tokens for %d feeds, want %d", t, len(s.Targets[t].Tokens), s.Feeds)
			}
			for f := 0; f < s.Feeds; f++ {
				if len(s.Targets[t].Tokens[f]) < need[t][f] {
					return fmt.Errorf("target %d feed %d: %d tokens, want %d", t, f, len(s.Targets[t].Tokens[f]), need[t][f])
				}
			}
		}
	}
	return nil
}

// slow reports whether connection i is one of the non-reading ones:
// spread evenly, so that any n consecutive connections hold
// SlowFraction·n of them, give or take one.
func (s *poolSpec) slow(i int) bool {
	if s.SlowFraction <= 0 {
		return false
	}
	return math.Floor(float64(i+1)*s.SlowFraction) > math.Floor(float64(i)*s.SlowFraction)
}

// poolStatus is a cumulative account of a pool; JSON for workers.
type poolStatus struct {
	Conns      int64 `json:"conns"`       // connections the pool runs
	Ready      int64 `json:"ready"`       // subscribed and past the initial snapshot
	Failed     int64 `json:"failed"`      // never became ready
	Dropped    int64 `json:"dropped"`     // closed by the server after ready
	Refused    int64 `json:"refused"`     // handshakes refused with HTTP 429/503 (retried)
	Slow       int64 `json:"slow"`        // ready connections that stopped reading
	Deliveries int64 `json:"deliveries"`  // writer marks received in `changes`
	Stale      int64 `json:"stale"`       // a document version not newer than one seen
	Skipped    int64 `json:"skipped"`     // versions superseded before delivery
	SeqGaps    int64 `json:"seq_gaps"`    // `changes` whose seq skipped ahead
	Catchups   int64 `json:"catchups"`    // snapshots after the first (catch-ups)
	ServerErrs int64 `json:"server_errs"` // `error` or `unsubscribed` frames
	Bytes      int64 `json:"bytes"`       // frame bytes received

	PerTarget      []TargetCount `json:"per_target"`
	FeedReady      []int64       `json:"feed_ready"`      // ready connections per Feed, slow ones included
	FeedDeliveries []int64       `json:"feed_deliveries"` // deliveries per Feed
	CloseCodes     map[int]int64 `json:"close_codes,omitempty"`
	Latency        Sparse        `json:"latency"` // commit (or publish) → receipt, reading connections
	Connect        Sparse        `json:"connect"` // dial → ready
	ErrorSamples   []string      `json:"errors,omitempty"`
	Final          bool          `json:"final,omitempty"`
}

// TargetCount is a per-target share of a PoolStatus.
type TargetCount struct {
	Ready      int64 `json:"ready"`
	Deliveries int64 `json:"deliveries"`
}

// merge adds o into s (histograms included).
func (s *poolStatus) merge(o poolStatus) {
	s.Conns += o.Conns
	s.Ready += o.Ready
	s.Failed += o.Failed
	s.Dropped += o.Dropped
	s.Refused += o.Refused
	s.Slow += o.Slow
	s.Deliveries += o.Deliveries
	s.Stale += o.Stale
	s.Skipped += o.Skipped
	s.SeqGaps += o.SeqGaps
	s.Catchups += o.Catchups
	s.ServerErrs += o.ServerErrs
	s.Bytes += o.Bytes
	s.PerTarget = growTargets(s.PerTarget, len(o.PerTarget))
	for i, t := range o.PerTarget {
		s.PerTarget[i].Ready += t.Ready
		s.PerTarget[i].Deliveries += t.Deliveries
	}
	s.FeedReady = addInts(s.FeedReady, o.FeedReady)
	s.FeedDeliveries = addInts(s.FeedDeliveries, o.FeedDeliveries)
	for k, v := range o.CloseCodes {
		if s.CloseCodes == nil {
			s.CloseCodes = map[int]int64{}
		}
		s.CloseCodes[k] += v
	}
	lh, ch := fromSparse(s.Latency), fromSparse(s.Connect)
	lh.Merge(fromSparse(o.Latency))
	ch.Merge(fromSparse(o.Connect))
	s.Latency, s.Connect = lh.Sparse(), ch.Sparse()
	for _, e := range o.ErrorSamples {
		if len(s.ErrorSamples) < maxErrorSamples {
			s.ErrorSamples = append(s.ErrorSamples, e)
		}
	}
}

func growTargets(a []TargetCount, n int) []TargetCount {
	for len(a) < n {
		a = append(a, TargetCount{})
	}
	return a
}

func addInts(a, b []int64) []int64 {
	for len(a) < len(b) {
		a = append(a, 0)
	}
	for i, v := range b {
		a[i] += v
	}
	return a
}

const maxErrorSamples = 10

// loadPool runs subscriber connections in this process. Its methods are safe
// for concurrent use; every counter is atomic.
type loadPool struct {
	spec   poolSpec
	d      *dialer
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{}

	ready, failed, dropped, refused, slow atomic.Int64
	deliveries, stale, skipped, seqGaps   atomic.Int64
	catchups, serverErrs, bytes           atomic.Int64
	perTargetReady, perTargetDeliv        []atomic.Int64
	feedReady, feedDeliv                  []atomic.Int64
	latency, connect                      Histogram
	errMu                                 sync.Mutex // guards errSamples and closeCodes
	errSamples                            []string
	closeCodes                            map[int]int64
	ownDialer                             bool
	subscribeMsg                          []byte
	openMu                                sync.Mutex // guards open
	open                                  map[*websocket.Conn]struct{}
}

// startPool validates spec and starts its connections in the background,
// from spec.SourceAddrs loopback source addresses (Stop ends them), with a
// shared dialer (nil: the pool makes and closes its own).
func startPool(ctx context.Context, spec poolSpec, d *dialer) (*loadPool, error) {
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("invalid pool: %w", err)
	}
	p := &loadPool{spec: spec, d: d, sem: make(chan struct{}, spec.DialConcurrency), closeCodes: map[int]int64{}, open: map[*websocket.Conn]struct{}{}}
	if p.d == nil {
		var err error
		if p.d, err = newDialer(max(spec.SourceAddrs, 1)); err != nil {
			return nil, err
		}
		p.ownDialer = true
	}
	p.perTargetReady = make([]atomic.Int64, len(spec.Targets))
	p.perTargetDeliv = make([]atomic.Int64, len(spec.Targets))
	p.feedReady = make([]atomic.Int64, spec.Feeds)
	p.feedDeliv = make([]atomic.Int64, spec.Feeds)
	sub, _ := json.Marshal(wire.ClientMessage{Type: wire.TypeSubscribe, ID: "s1", Collection: spec.Collection})
	p.subscribeMsg = sub
	p.ctx, p.cancel = context.WithCancel(ctx)
	for i := spec.First; i < spec.First+spec.Count; i++ {
		p.wg.Add(1)
		go p.run(i)
	}
	return p, nil
}

// Delivered is the number of writes received or found superseded so far
// (cheap; for closed-loop writers).
func (p *loadPool) Delivered() int64 { return p.deliveries.Load() + p.skipped.Load() }

// Status returns the pool's cumulative account so far.
func (p *loadPool) Status() poolStatus {
	s := poolStatus{
		Conns: int64(p.spec.Count), Ready: p.ready.Load(), Failed: p.failed.Load(), Dropped: p.dropped.Load(),
		Refused: p.refused.Load(), Slow: p.slow.Load(), Deliveries: p.deliveries.Load(), Stale: p.stale.Load(),
		Skipped: p.skipped.Load(), SeqGaps: p.seqGaps.Load(), Catchups: p.catchups.Load(),
		ServerErrs: p.serverErrs.Load(), Bytes: p.bytes.Load(),
		Latency: p.latency.Sparse(), Connect: p.connect.Sparse(),
	}
	for i := range p.perTargetReady {
		s.PerTarget = append(s.PerTarget, TargetCount{Ready: p.perTargetReady[i].Load(), Deliveries: p.perTargetDeliv[i].Load()})
	}
	for i := range p.feedReady {
		s.FeedReady = append(s.FeedReady, p.feedReady[i].Load())
		s.FeedDeliveries = append(s.FeedDeliveries, p.feedDeliv[i].Load())
	}
	p.errMu.Lock()
	s.ErrorSamples = append([]string(nil), p.errSamples...)
	if len(p.closeCodes) > 0 {
		s.CloseCodes = map[int]int64{}
		for k, v := range p.closeCodes {
			s.CloseCodes[k] = v
		}
	}
	p.errMu.Unlock()
	return s
}

// track adds (or removes) a ready connection to the set Stop closes; it
// refuses to add once the pool is stopping.
func (p *loadPool) track(ws *websocket.Conn, add bool) bool {
	p.openMu.Lock()
	defer p.openMu.Unlock()
	if !add {
		delete(p.open, ws)
		return true
	}
	if p.ctx.Err() != nil {
		return false
	}
	p.open[ws] = struct{}{}
	return true
}

// Stop closes every connection, waits for them and returns the final
// account.
func (p *loadPool) Stop() poolStatus {
	p.openMu.Lock()
	p.cancel()
	for ws := range p.open {
		_ = ws.CloseNow()
	}
	p.openMu.Unlock()
	p.wg.Wait()
	if p.ownDialer {
		p.d.close()
	}
	s := p.Status()
	s.Final = true
	return s
}

func (p *loadPool) noteErr(format string, a ...any) {
	p.errMu.Lock()
	if len(p.errSamples) < maxErrorSamples {
		p.errSamples = append(p.errSamples, fmt.Sprintf(format, a...))
	}
	p.errMu.Unlock()
}

func (p *loadPool) noteClose(code int) {
	p.errMu.Lock()
	p.closeCodes[code]++
	p.errMu.Unlock()
}

// conn state of one subscriber.
type subConn struct {
	p      *loadPool
	i      int
	target int
	feed   int
	ws     *websocket.Conn
	buf    bytes.Buffer
	marks  []mark
	last   []int64 // per document slot, the last write seen
	seq    uint64
	seqOK  bool
	snaps  int
	epoch  string
	subbed bool
}

func (p *loadPool) run(i int) {
	defer p.wg.Done()
	t, f, slot := p.spec.assign(i)
	c := &subConn{p: p, i: i, target: t, feed: f}
	start := time.Now()
	select {
	case p.sem <- struct{}{}:
	case <-p.ctx.Done():
		p.failed.Add(1)
		return
	}
	err := c.open(slot)
	<-p.sem
	if err != nil {
		if c.ws != nil {
			_ = c.ws.CloseNow()
		}
		if p.ctx.Err() == nil {
			p.failed.Add(1)
			p.noteErr("conn %d: %v", i, err)
		} else {
			p.failed.Add(1)
		}
		return
	}
	p.connect.Record(time.Since(start))
	p.ready.Add(1)
	p.perTargetReady[t].Add(1)
	p.feedReady[f].Add(1)
	if !p.track(c.ws, true) {
		_ = c.ws.CloseNow()
		return
	}
	defer func() {
		p.track(c.ws, false)
		_ = c.ws.CloseNow()
	}()
	if p.spec.slow(i) {
		p.slow.Add(1)
		<-p.ctx.Done()
		return
	}
	c.last = make([]int64, p.spec.DocsPerFeed)
	for k := range c.last {
		c.last[k] = int64(k - p.spec.DocsPerFeed) // the next write of slot k is w=k
	}
	for {
		b, err := c.read()
		if err != nil {
			if p.ctx.Err() == nil {
				p.dropped.Add(1)
				p.noteClose(int(websocket.CloseStatus(err)))
				p.noteErr("conn %d dropped: %v", i, err)
			}
			return
		}
		c.handle(b, time.Now())
	}
}

// read reads one text frame into c.buf (reused across frames). It reads
// without a context: coder/websocket arms a context.AfterFunc per read
// for a cancellable one, which would cost an allocation and a lock on
// the shared parent per frame; Stop closes the connection instead.
func (c *subConn) read() ([]byte, error) {
	_, r, err := c.ws.Reader(context.Background())
	if err != nil {
		return nil, err
	}
	c.buf.Reset()
	if _, err := c.buf.ReadFrom(r); err != nil {
		return nil, err
	}
	c.p.bytes.Add(int64(c.buf.Len()))
	return c.buf.Bytes(), nil
}

// open dials, authenticates and subscribes; it returns once the
// subscription's first snapshot is complete (Firegate) or the broadcaster
// confirmed the registration (baseline).
func (c *subConn) open(slot int) error {
	p := c.p
	ctx, cancel := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancel()
	tg := p.spec.Targets[c.target]
	var u, token string
	if p.spec.Kind == KindFiregate {
		u, token = tg.WSURL, tg.Tokens[c.feed][slot]
	} else {
		u = tg.WSURL + "?group=" + strconv.Itoa(c.feed)
	}
	var ws *websocket.Conn
	var err error
	for attempt := 0; ; attempt++ {
		ws, err = p.d.dial(ctx, u, dialOpts{token: token, index: c.i})
		if err == nil {
			break
		}
		st := refusalStatus(err)
		if (st != 429 && st != 503) || attempt >= 20 {
			return err
		}
		p.refused.Add(1)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(100+attempt*100) * time.Millisecond):
		}
	}
	c.ws = ws
	if p.spec.Kind == KindFiregate {
		if err := c.await(ctx, wire.TypeWelcome); err != nil {
			return err
		}
		if err := ws.Write(ctx, websocket.MessageText, p.subscribeMsg); err != nil {
			return fmt.Errorf("failed to subscribe: %w", err)
		}
		if err := c.await(ctx, wire.TypeSubscribed); err != nil {
			return err
		}
		return c.await(ctx, wire.TypeSnapshot)
	}
	return c.await(ctx, wire.TypeSubscribed)
}

// await reads frames until one of type want (for a snapshot: its final
// chunk); an error, unsubscribed or close frame fails.
func (c *subConn) await(ctx context.Context, want string) error {
	for {
		_, r, err := c.ws.Reader(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", want, err)
		}
		c.buf.Reset()
		if _, err := c.buf.ReadFrom(r); err != nil {
			return fmt.Errorf("waiting for %s: %w", want, err)
		}
		b := c.buf.Bytes()
		typ := frameType(b)
		switch typ {
		case wire.TypeError, wire.TypeUnsubscribed:
			var m wire.ServerMessage
			_ = json.Unmarshal(b, &m)
			return fmt.Errorf("waiting for %s: got %s %s: %s", want, typ, m.Code+m.Reason, m.Message)
		case wire.TypeSubscribed:
			var m wire.ServerMessage
			if err := json.Unmarshal(b, &m); err == nil {
				c.epoch = m.Epoch
			}
			c.subbed = true
		case wire.TypeSnapshot:
			if seq, ok := frameSeq(b); ok {
				c.seq, c.seqOK = seq, true
			}
			if !finalChunk(b) {
				continue
			}
			c.snaps++
		case wire.TypeChanges:
			// A change that raced the snapshot; it still counts.
			c.handle(b, time.Now())
		}
		if typ == want {
			return nil
		}
	}
}

// handle accounts one frame received at now on a ready connection.
func (c *subConn) handle(b []byte, now time.Time) {
	p := c.p
	switch frameType(b) {
	case wire.TypeChanges:
		if seq, ok := frameSeq(b); ok {
			if c.seqOK && seq > c.seq+1 {
				p.seqGaps.Add(1)
			}
			c.seq, c.seqOK = seq, true
		}
		c.marks = appendMarks(c.marks[:0], b)
		nowNS := now.UnixNano()
		for _, m := range c.marks {
			p.latency.Record(time.Duration(nowNS - m.SentNS))
			if c.last != nil {
				k := int(m.W % int64(len(c.last)))
				if m.W <= c.last[k] {
					p.stale.Add(1)
					continue
				}
				if gap := (m.W-c.last[k])/int64(len(c.last)) - 1; gap > 0 {
					p.skipped.Add(gap)
				}
				c.last[k] = m.W
			}
		}
		n := int64(len(c.marks))
		p.deliveries.Add(n)
		p.perTargetDeliv[c.target].Add(n)
		p.feedDeliv[c.feed].Add(n)
	case wire.TypeSnapshot:
		if seq, ok := frameSeq(b); ok {
			c.seq, c.seqOK = seq, true
		}
		if finalChunk(b) {
			c.snaps++
			if c.snaps > 1 {
				p.catchups.Add(1)
			}
		}
	case wire.TypeError, wire.TypeUnsubscribed:
		p.serverErrs.Add(1)
		p.noteErr("conn %d: %s", c.i, truncateStr(string(b), 200))
	}
}
