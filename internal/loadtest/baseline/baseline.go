// Package baseline is the floor Firegate is measured against: a minimal
// broadcaster written directly on coder/websocket (see Broadcaster). The
// load generator (package loadtest) runs it in a child process and drives
// it over HTTP; the frames it broadcasts are the load generator's
// (FrameFunc), so both sides carry the same documents.
package baseline

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/firegate/firegate/wire"
)

// Broadcaster is the floor the gateway is compared with: a minimal
// broadcaster written directly on coder/websocket. Each connection joins
// one group (the analogue of a Feed) and has one reader and one writer
// goroutine; a broadcast encodes its frame once and queues the same bytes
// on every connection of the group. With Batched, the writer writes every
// frame queued at wake-up and flushes them to the socket together (one
// write(2) per batch instead of one per frame).
//
// It is safe for concurrent use. mu guards groups; each connection's
// queue has its own lock.
type Broadcaster struct {
	batched bool
	frame   FrameFunc
	mu      sync.Mutex
	groups  map[int]*atomic.Pointer[[]*bconn]
	conns   atomic.Int64
	queued  atomic.Int64
}

// FrameFunc encodes the frame of write w of group g in run: the
// `changes` a Firegate subscriber would get for the same document (docs
// document ids per group, padding in each document), timestamped now.
type FrameFunc func(run string, g int, w int64, docs int, now time.Time, padding string) []byte

// New returns an empty broadcaster whose runs encode their frames with
// frame.
func New(batched bool, frame FrameFunc) *Broadcaster {
	return &Broadcaster{batched: batched, frame: frame, groups: map[int]*atomic.Pointer[[]*bconn]{}}
}

// Conns is the number of connections open.
func (b *Broadcaster) Conns() int64 { return b.conns.Load() }

// Queued is the number of frames queued on all connections, not yet
// written.
func (b *Broadcaster) Queued() int64 { return b.queued.Load() }

type bconn struct {
	ws    *websocket.Conn
	cork  *corkConn // nil unless batched
	mu    sync.Mutex
	q     [][]byte
	spare [][]byte
	wake  chan struct{}
}

func (c *bconn) push(b []byte) {
	c.mu.Lock()
	c.q = append(c.q, b)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (b *Broadcaster) group(g int) *atomic.Pointer[[]*bconn] {
	p := b.groups[g]
	if p == nil {
		p = &atomic.Pointer[[]*bconn]{}
		empty := []*bconn{}
		p.Store(&empty)
		b.groups[g] = p
	}
	return p
}

func (b *Broadcaster) join(g int, c *bconn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.group(g)
	old := *p.Load()
	n := make([]*bconn, len(old), len(old)+1)
	copy(n, old)
	n = append(n, c)
	p.Store(&n)
}

func (b *Broadcaster) leave(g int, c *bconn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.group(g)
	old := *p.Load()
	n := make([]*bconn, 0, len(old))
	for _, x := range old {
		if x != c {
			n = append(n, x)
		}
	}
	p.Store(&n)
}

// Publish queues frame on every connection of group g and returns how
// many connections it reached.
func (b *Broadcaster) Publish(g int, frame []byte) int {
	b.mu.Lock()
	p := b.group(g)
	b.mu.Unlock()
	conns := *p.Load()
	b.queued.Add(int64(len(conns)))
	for _, c := range conns {
		c.push(frame)
	}
	return len(conns)
}

// memInfo is what /debug/memory answers: the fields of the gateway's
// /debug/memory that a broadcaster has.
type memInfo struct {
	HeapAlloc   int64 `json:"heap_alloc"`
	HeapInuse   int64 `json:"heap_inuse"`
	StackInuse  int64 `json:"stack_inuse"`
	Sys         int64 `json:"sys"`
	Goroutines  int64 `json:"goroutines"`
	Connections int64 `json:"connections"`
}

var subscribedHello = []byte(`{"type":"subscribed","id":"s1","epoch":"baseline","resumed":false}`)

// ServeHTTP serves /ws?group=N (the broadcast stream), /run (POST: a
// publishing run), /debug/memory and /healthz.
func (b *Broadcaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ws":
		b.serveWS(w, r)
	case "/run":
		b.serveRun(w, r)
	case "/debug/memory":
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(memInfo{HeapAlloc: int64(ms.HeapAlloc), HeapInuse: int64(ms.HeapInuse), StackInuse: int64(ms.StackInuse),
			Sys: int64(ms.Sys), Goroutines: int64(runtime.NumGoroutine()), Connections: b.conns.Load()})
	case "/healthz", "/readyz":
		_, _ = w.Write([]byte("ok\n"))
	default:
		http.NotFound(w, r)
	}
}

type corkKey struct{}

func (b *Broadcaster) serveWS(w http.ResponseWriter, r *http.Request) {
	g, err := strconv.Atoi(r.URL.Query().Get("group"))
	if err != nil || g < 0 {
		http.Error(w, "group must be a non-negative integer", http.StatusBadRequest)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{wire.Subprotocol}, InsecureSkipVerify: true})
	if err != nil {
		return
	}
	c := &bconn{ws: ws, wake: make(chan struct{}, 1)}
	if b.batched {
		c.cork, _ = r.Context().Value(corkKey{}).(*corkConn)
	}
	ctx, cancel := context.WithCancel(r.Context())
	b.conns.Add(1)
	b.join(g, c)
	c.push(subscribedHello)
	b.queued.Add(1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.writeLoop(ctx, c)
	}()
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			break
		}
	}
	cancel()
	<-done
	b.leave(g, c)
	b.conns.Add(-1)
	c.mu.Lock()
	b.queued.Add(-int64(len(c.q)))
	c.q = nil
	c.mu.Unlock()
	_ = ws.CloseNow()
}

func (b *Broadcaster) writeLoop(ctx context.Context, c *bconn) {
	for {
		select {
		case <-c.wake:
		case <-ctx.Done():
			return
		}
		c.mu.Lock()
		batch := c.q
		c.q = c.spare[:0]
		c.mu.Unlock()
		if c.cork != nil {
			c.cork.cork()
		}
		var err error
		for _, m := range batch {
			// No context: a cancellable one costs coder/websocket a
			// context.AfterFunc per write; the floor has no write
			// deadline (the reader closing the socket ends a stuck
			// write).
			if err = c.ws.Write(context.Background(), websocket.MessageText, m); err != nil {
				break
			}
		}
		if c.cork != nil {
			if e := c.cork.uncork(); err == nil {
				err = e
			}
		}
		b.queued.Add(-int64(len(batch)))
		clear(batch)
		c.spare = batch
		if err != nil {
			_ = c.ws.CloseNow()
			return
		}
	}
}

// Result is the answer of a publishing run.
type Result struct {
	Published []int64 `json:"published"` // broadcasts per group
	Reached   int64   `json:"reached"`   // frames queued in total
	ElapsedS  float64 `json:"elapsed_s"`
}

func (b *Broadcaster) serveRun(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	rate, err1 := strconv.ParseFloat(q.Get("rate"), 64)
	groups, err2 := strconv.Atoi(q.Get("groups"))
	dur, err3 := time.ParseDuration(q.Get("duration"))
	docs, err4 := strconv.Atoi(q.Get("docs"))
	pad, err5 := strconv.Atoi(q.Get("pad"))
	window, err6 := strconv.Atoi(q.Get("window"))
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil || groups < 1 || docs < 1 || rate < 0 || dur <= 0 || pad < 0 || window < 1 {
		http.Error(w, "want rate>=0, groups>=1, duration>0, docs>=1, pad>=0, window>=1", http.StatusBadRequest)
		return
	}
	res := b.Run(r.Context(), RunConfig{Rate: rate, Groups: groups, Duration: dur, Docs: docs, Run: q.Get("run"), Pad: pad, Window: window})
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

// RunConfig configures a publishing run.
type RunConfig struct {
	Rate     float64       // broadcasts per second over all groups; 0: flat out
	Groups   int           // groups (Feeds), published round-robin
	Duration time.Duration // wall clock
	Docs     int           // document ids per group (as the Firegate writer)
	Run      string        // run id, for document ids
	Pad      int           // padding bytes per document
	Window   int           // flat out: at most this many frames queued per connection; 0 → 8
}

// Run publishes for o.Duration: at o.Rate broadcasts per second spread
// round-robin over the groups, or (rate 0) as fast as the connections
// drain, keeping at most o.Window frames queued per connection on
// average. Broadcast w of group g carries the same document a Firegate
// writer would commit, with its mark taken just before encoding.
func (b *Broadcaster) Run(ctx context.Context, o RunConfig) Result {
	rate, groups, d, docs, run, pad := o.Rate, o.Groups, o.Duration, o.Docs, o.Run, o.Pad
	window := int64(o.Window)
	if window <= 0 {
		window = 8
	}
	res := Result{Published: make([]int64, groups)}
	padding := strings.Repeat("x", pad)
	start := time.Now()
	deadline := start.Add(d)
	for k := int64(0); ; k++ {
		if rate > 0 {
			next := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
			if next.After(deadline) {
				break
			}
			if wait := time.Until(next); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					res.ElapsedS = time.Since(start).Seconds()
					return res
				}
			}
		} else {
			for b.queued.Load() > window*max(b.conns.Load(), 1) {
				if time.Now().After(deadline) || ctx.Err() != nil {
					break
				}
				time.Sleep(200 * time.Microsecond)
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
		}
		g := int(k % int64(groups))
		w := res.Published[g]
		now := time.Now()
		frame := b.frame(run, g, w, docs, now, padding)
		res.Reached += int64(b.Publish(g, frame))
		res.Published[g]++
	}
	res.ElapsedS = time.Since(start).Seconds()
	return res
}

// corkConn is a net.Conn whose writes can be held back ("corked") and
// flushed in one write: the batched broadcaster corks, writes every queued
// frame through coder/websocket, then uncorks. mu serializes writes, so a
// control frame written by the reader goroutine never interleaves.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 64<<10 {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &corkConn{Conn: c}, nil
}

// Serve serves b on ln until ctx ends. With a batched
// broadcaster every connection is wrapped so that it can be corked.
func Serve(ctx context.Context, b *Broadcaster, ln net.Listener) error {
	if b.batched {
		ln = corkListener{ln}
	}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cc, ok := c.(*corkConn); ok {
				return context.WithValue(ctx, corkKey{}, cc)
			}
			return ctx
		}}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
