package loadtest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// serveTestBroadcaster serves a broadcaster on loopback for one test.
func serveTestBroadcaster(t *testing.T, batched bool) (*Broadcaster, *Instance) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := NewBroadcaster(batched)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeBroadcaster(ctx, b, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeBroadcaster: %v", err)
		}
	})
	kind := KindBaseline
	if batched {
		kind = KindBaselineBatched
	}
	base := "http://" + ln.Addr().String()
	return b, newInstance("b", kind, base, base)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func baselineSpec(in *Instance, total, feeds int) PoolSpec {
	return PoolSpec{Kind: KindBaseline, Targets: []PoolTarget{{WSURL: in.WSURL()}}, Total: total, Count: total, Feeds: feeds,
		ConnsPerUser: 1, SourceAddrs: 3, DialConcurrency: 8, DocsPerFeed: 10}
}

func TestBroadcasterDeliversEveryFrame(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(map[bool]string{false: "unbatched", true: "batched"}[batched], func(t *testing.T) {
			b, in := serveTestBroadcaster(t, batched)
			spec := baselineSpec(in, 12, 3)
			p, err := StartPool(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			waitFor(t, 10*time.Second, "12 ready", func() bool { return p.Status().Ready == 12 })
			waitFor(t, 5*time.Second, "12 registered", func() bool { return b.conns.Load() == 12 })
			res := b.Run(context.Background(), BroadcastRun{Rate: 200, Groups: 3, Duration: 300 * time.Millisecond, Docs: 10, Run: "t1", Pad: 50})
			var want int64
			for _, n := range res.Published {
				want += n * 4 // 12 connections over 3 groups
			}
			if res.Reached != want || want == 0 {
				t.Fatalf("reached %d, want %d (%v)", res.Reached, want, res.Published)
			}
			waitFor(t, 10*time.Second, "every delivery", func() bool { return p.Status().Deliveries == want })
			st := p.Stop()
			if st.Stale != 0 || st.Skipped != 0 || st.SeqGaps != 0 || st.Failed != 0 || st.Dropped != 0 {
				t.Fatalf("status: %+v", st)
			}
			if FromSparse(st.Latency).Count() != uint64(want) {
				t.Fatalf("latency samples %d, want %d", FromSparse(st.Latency).Count(), want)
			}
			for f, n := range st.FeedDeliveries {
				if n != res.Published[f]*4 {
					t.Fatalf("feed %d: %d deliveries, want %d", f, n, res.Published[f]*4)
				}
			}
			waitFor(t, 5*time.Second, "connections gone", func() bool { return b.conns.Load() == 0 })
			if q := b.queued.Load(); q != 0 {
				t.Fatalf("queued %d after all left", q)
			}
		})
	}
}

func TestBroadcasterFloodKeepsQueuesBounded(t *testing.T) {
	b, in := serveTestBroadcaster(t, true)
	p, err := StartPool(context.Background(), baselineSpec(in, 4, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	waitFor(t, 10*time.Second, "4 ready", func() bool { return p.Status().Ready == 4 && b.conns.Load() == 4 })
	var maxQ int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-done:
				return
			default:
			}
			maxQ = max(maxQ, b.queued.Load())
			time.Sleep(time.Millisecond)
		}
	}()
	res := b.Run(context.Background(), BroadcastRun{Groups: 1, Duration: 300 * time.Millisecond, Docs: 10, Run: "t2", Window: 32})
	done <- struct{}{}
	if res.Published[0] < 10 {
		t.Fatalf("flood published only %d", res.Published[0])
	}
	// The flood waits while more than 32 frames per connection are
	// queued; one broadcast adds one per connection.
	if maxQ > 33*4 {
		t.Fatalf("queue grew to %d, bound is %d", maxQ, 33*4)
	}
	waitFor(t, 10*time.Second, "flood delivered", func() bool { return p.Status().Deliveries == res.Published[0]*4 })
}

func TestCorkConnBatchesWrites(t *testing.T) {
	a, bconn := net.Pipe()
	defer a.Close()
	defer bconn.Close()
	c := &corkConn{Conn: a}
	got := make(chan []byte, 10)
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := bconn.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()
	c.cork()
	for _, s := range []string{"one ", "two ", "three"} {
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case b := <-got:
		t.Fatalf("corked write reached the peer: %q", b)
	case <-time.After(20 * time.Millisecond):
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "one two three" {
		t.Fatalf("peer read %q in one write, want all three", b)
	}
	// Uncorked writes pass straight through.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = c.Write([]byte("direct"))
	}()
	if b := <-got; string(b) != "direct" {
		t.Fatalf("read %q", b)
	}
	wg.Wait()
	if err := c.uncork(); err != nil {
		t.Fatal("uncork with nothing buffered:", err)
	}
	_ = a.Close()
	for range got {
	}
}

func TestWorkersRunShares(t *testing.T) {
	b, in := serveTestBroadcaster(t, false)
	spec := baselineSpec(in, 7, 2)
	ws, err := startWorkers(context.Background(), spec, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws.pools) != 3 {
		t.Fatalf("%d workers for 7 connections at 3 each, want 3", len(ws.pools))
	}
	if st := ws.Status(); st.Conns != 7 {
		t.Fatalf("status before the first report counts %d connections, want 7", st.Conns)
	}
	waitFor(t, 20*time.Second, "7 ready across workers", func() bool { return ws.Status().Ready == 7 && b.conns.Load() == 7 })
	res := b.Run(context.Background(), BroadcastRun{Rate: 100, Groups: 2, Duration: 200 * time.Millisecond, Docs: 10, Run: "t3", Pad: 10})
	counts := populationCounts(spec)
	want := res.Published[0]*counts[0][0] + res.Published[1]*counts[0][1]
	waitFor(t, 10*time.Second, "deliveries reported by the workers", func() bool { return ws.Status().Deliveries == want })
	st := ws.Stop()
	if !st.Final || st.Deliveries != want || st.Ready != 7 || st.Failed != 0 || len(st.ErrorSamples) != 0 {
		t.Fatalf("final: deliveries %d (want %d) ready %d failed %d errors %v", st.Deliveries, want, st.Ready, st.Failed, st.ErrorSamples)
	}
}
