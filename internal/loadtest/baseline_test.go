package loadtest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/firegate/firegate/internal/loadtest/baseline"
	"github.com/firegate/firegate/internal/testkit"
)

// serveTestBroadcaster serves a broadcaster on loopback for one test.
func serveTestBroadcaster(t *testing.T, batched bool) (*baseline.Broadcaster, *Instance) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := baseline.New(batched, broadcastFrame)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- baseline.Serve(ctx, b, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("baseline.Serve: %v", err)
		}
	})
	kind := KindBaseline
	if batched {
		kind = KindBaselineBatched
	}
	base := "http://" + ln.Addr().String()
	return b, newInstance("b", kind, base, base)
}

// waitCount waits up to d until got() returns want; a timeout fails t
// with the last count.
func waitCount(t *testing.T, d time.Duration, what string, got func() int64, want int64) {
	t.Helper()
	testkit.CheckFor(t, d, 10*time.Millisecond, func() error {
		if n := got(); n != want {
			return fmt.Errorf("%s = %d, want %d", what, n, want)
		}
		return nil
	})
}

func baselineSpec(in *Instance, total, feeds int) poolSpec {
	return poolSpec{Kind: KindBaseline, Targets: []poolTarget{{WSURL: in.WSURL()}}, Total: total, Count: total, Feeds: feeds,
		ConnsPerUser: 1, SourceAddrs: 3, DialConcurrency: 8, DocsPerFeed: 10}
}

func TestBroadcasterDeliversEveryFrame(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(map[bool]string{false: "unbatched", true: "batched"}[batched], func(t *testing.T) {
			b, in := serveTestBroadcaster(t, batched)
			spec := baselineSpec(in, 12, 3)
			p, err := startPool(context.Background(), spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			waitCount(t, 10*time.Second, "ready connections", func() int64 { return p.Status().Ready }, 12)
			waitCount(t, 5*time.Second, "broadcaster connections", b.Conns, 12)
			res := b.Run(context.Background(), baseline.RunConfig{Rate: 200, Groups: 3, Duration: 300 * time.Millisecond, Docs: 10, Run: "t1", Pad: 50})
			var want int64
			for _, n := range res.Published {
				want += n * 4 // 12 connections over 3 groups
			}
			if res.Reached != want || want == 0 {
				t.Fatalf("reached %d, want %d (%v)", res.Reached, want, res.Published)
			}
			waitCount(t, 10*time.Second, "deliveries", func() int64 { return p.Status().Deliveries }, want)
			st := p.Stop()
			if st.Stale != 0 || st.Skipped != 0 || st.SeqGaps != 0 || st.Failed != 0 || st.Dropped != 0 {
				t.Fatalf("status: %+v", st)
			}
			if fromSparse(st.Latency).Count() != uint64(want) {
				t.Fatalf("latency samples %d, want %d", fromSparse(st.Latency).Count(), want)
			}
			for f, n := range st.FeedDeliveries {
				if n != res.Published[f]*4 {
					t.Fatalf("feed %d: %d deliveries, want %d", f, n, res.Published[f]*4)
				}
			}
			waitCount(t, 5*time.Second, "broadcaster connections", b.Conns, 0)
			if q := b.Queued(); q != 0 {
				t.Fatalf("queued %d after all left", q)
			}
		})
	}
}

func TestBroadcasterFloodKeepsQueuesBounded(t *testing.T) {
	b, in := serveTestBroadcaster(t, true)
	p, err := startPool(context.Background(), baselineSpec(in, 4, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	waitCount(t, 10*time.Second, "ready connections", func() int64 { return p.Status().Ready }, 4)
	waitCount(t, 10*time.Second, "broadcaster connections", b.Conns, 4)
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
			maxQ = max(maxQ, b.Queued())
			time.Sleep(time.Millisecond)
		}
	}()
	res := b.Run(context.Background(), baseline.RunConfig{Groups: 1, Duration: 300 * time.Millisecond, Docs: 10, Run: "t2", Window: 32})
	done <- struct{}{}
	if res.Published[0] < 10 {
		t.Fatalf("flood published only %d", res.Published[0])
	}
	// The flood waits while more than 32 frames per connection are
	// queued; one broadcast adds one per connection.
	if maxQ > 33*4 {
		t.Fatalf("queue grew to %d, bound is %d", maxQ, 33*4)
	}
	waitCount(t, 10*time.Second, "deliveries of the flood", func() int64 { return p.Status().Deliveries }, res.Published[0]*4)
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
	waitCount(t, 20*time.Second, "ready connections across workers", func() int64 { return ws.Status().Ready }, 7)
	waitCount(t, 10*time.Second, "broadcaster connections", b.Conns, 7)
	res := b.Run(context.Background(), baseline.RunConfig{Rate: 100, Groups: 2, Duration: 200 * time.Millisecond, Docs: 10, Run: "t3", Pad: 10})
	counts := populationCounts(spec)
	want := res.Published[0]*counts[0][0] + res.Published[1]*counts[0][1]
	waitCount(t, 10*time.Second, "deliveries reported by the workers", func() int64 { return ws.Status().Deliveries }, want)
	st := ws.Stop()
	if !st.Final || st.Deliveries != want || st.Ready != 7 || st.Failed != 0 || len(st.ErrorSamples) != 0 {
		t.Fatalf("final: deliveries %d (want %d) ready %d failed %d errors %v", st.Deliveries, want, st.Ready, st.Failed, st.ErrorSamples)
	}
}
