package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/firegate/firegate/wire"
)

// client is a short-lived protocol client (churn, authstorm).
type client struct {
	ws  *websocket.Conn
	buf bytes.Buffer
}

// errRefused marks a refusal by a limit (HTTP 429/503, close 4008).
var errRefused = errors.New("refused by a limit")

func (r *runner) connect(ctx context.Context, u, token string) (*client, error) {
	ws, err := r.d.dial(ctx, u, dialOpts{token: token, index: -1})
	if err != nil {
		if st := refusalStatus(err); st == 429 || st == 503 {
			return nil, fmt.Errorf("%w: %v", errRefused, err)
		}
		return nil, err
	}
	return &client{ws: ws}, nil
}

// await reads until a frame of type want (a snapshot: its final chunk)
// and returns it decoded. An `error`, `unsubscribed` or close fails.
func (c *client) await(ctx context.Context, want string) (wire.ServerMessage, error) {
	var m wire.ServerMessage
	for {
		_, rd, err := c.ws.Reader(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == wire.CloseRateLimited {
				return m, fmt.Errorf("%w: %v", errRefused, err)
			}
			return m, fmt.Errorf("waiting for %s: %w", want, err)
		}
		c.buf.Reset()
		if _, err := c.buf.ReadFrom(rd); err != nil {
			return m, fmt.Errorf("waiting for %s: %w", want, err)
		}
		b := c.buf.Bytes()
		typ := frameType(b)
		switch typ {
		case wire.TypeError, wire.TypeUnsubscribed:
			m = wire.ServerMessage{}
			_ = json.Unmarshal(b, &m)
			if m.Code == wire.CodeRateLimited || m.Code == wire.CodeLimitExceeded {
				return m, fmt.Errorf("%w: %s: %s", errRefused, m.Code, m.Message)
			}
			return m, fmt.Errorf("waiting for %s: got %s %s%s: %s", want, typ, m.Code, m.Reason, m.Message)
		case wire.TypeSnapshot:
			if !finalChunk(b) {
				continue
			}
		}
		if typ != want {
			continue
		}
		m = wire.ServerMessage{}
		if typ == wire.TypeSnapshot || typ == wire.TypeChanges {
			m.Type = typ
			m.Seq, _ = frameSeq(b)
			return m, nil
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return m, fmt.Errorf("bad %s frame: %w", want, err)
		}
		return m, nil
	}
}

func (c *client) send(ctx context.Context, m wire.ClientMessage) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// churn: connect, subscribe, disconnect, reconnect with resume, at
// ChurnRate cycles per second, with a slow background writer so resumes
// have changes to catch up on.
func (r *runner) churn(ctx context.Context) error {
	cfg := r.cfg
	res := &RunResult{Scenario: ScenarioChurn, Target: KindFiregate, Params: map[string]any{"rate": cfg.ChurnRate, "feeds": cfg.Feeds,
		"duration": cfg.Duration.String(), "write_rate": cfg.ChurnWriteRate}}
	r.report.Runs = append(r.report.Runs, res)
	if r.writer == nil {
		err := errors.New("no Firestore emulator to write to")
		res.Errors = append(res.Errors, err.Error())
		return err
	}
	insts, stop, err := r.instances(ctx, KindFiregate)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return err
	}
	defer stop()
	res.Params["instances"] = len(insts)
	// Users: churnSlots per Feed per instance, far below the per-user cap.
	const churnSlots = 20
	tokens := make([][][]string, len(insts))
	for t, in := range insts {
		tokens[t] = make([][]string, cfg.Feeds)
		for f := 0; f < cfg.Feeds; f++ {
			for s := 0; s < churnSlots; s++ {
				tok, err := in.Token(ctx, feedUser(r.run, f, 1000+s), feedOrg(r.run, f), cfg.TokenTTL)
				if err != nil {
					res.Errors = append(res.Errors, err.Error())
					return err
				}
				tokens[t][f] = append(tokens[t][f], tok)
			}
		}
	}
	before := snapAll(ctx, insts, false)
	smp := r.newSampler(ctx, "churn", insts, before)
	var cycles, completed, failures, resumed, fresh atomic.Int64
	var hsH, subH, resH Histogram
	var errs errorSamples
	smp.setExtra(func() string {
		return fmt.Sprintf("cycles %d done %d failed %d resumed %d fresh %d handshake p99 %.1fms",
			cycles.Load(), completed.Load(), failures.Load(), resumed.Load(), fresh.Load(), ms(hsH.Quantile(0.99)))
	})
	cycle := func(k int64) error {
		t := int(k % int64(len(insts)))
		f := int((k / int64(len(insts))) % int64(cfg.Feeds))
		tok := tokens[t][f][int(k%churnSlots)]
		u := insts[t].WSURL()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := r.dialWelcome(cctx, u, tok, &hsH)
		if err != nil {
			return err
		}
		defer c.ws.CloseNow()
		t1 := time.Now()
		if err := c.send(cctx, wire.ClientMessage{Type: wire.TypeSubscribe, ID: "c1", Collection: loadCollection}); err != nil {
			return err
		}
		sub, err := c.await(cctx, wire.TypeSubscribed)
		if err != nil {
			return err
		}
		snap, err := c.await(cctx, wire.TypeSnapshot)
		if err != nil {
			return err
		}
		subH.Record(time.Since(t1))
		_ = c.ws.Close(websocket.StatusNormalClosure, "churn")

		c2, err := r.dialWelcome(cctx, u, tok, &hsH)
		if err != nil {
			return err
		}
		defer c2.ws.CloseNow()
		t3 := time.Now()
		if err := c2.send(cctx, wire.ClientMessage{Type: wire.TypeSubscribe, ID: "c1", Collection: loadCollection,
			Resume: &wire.Resume{Epoch: sub.Epoch, Seq: snap.Seq}}); err != nil {
			return err
		}
		sub2, err := c2.await(cctx, wire.TypeSubscribed)
		if err != nil {
			return err
		}
		resH.Record(time.Since(t3))
		if sub2.Resumed {
			resumed.Add(1)
		} else {
			fresh.Add(1)
			if _, err := c2.await(cctx, wire.TypeSnapshot); err != nil {
				return err
			}
		}
		_ = c2.ws.Close(websocket.StatusNormalClosure, "churn")
		return nil
	}
	start := time.Now()
	wctx, wcancel := context.WithCancel(ctx)
	var wwg sync.WaitGroup
	wwg.Add(1)
	go func() {
		defer wwg.Done()
		if cfg.ChurnWriteRate > 0 {
			r.writer.Run(wctx, WriteRun{Rate: cfg.ChurnWriteRate, Duration: cfg.Duration, Concurrency: 2})
		}
	}()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2000)
	deadline := start.Add(cfg.Duration)
	for k := int64(0); ; k++ {
		at := paceAt(start, k, cfg.ChurnRate)
		if at.After(deadline) || ctx.Err() != nil {
			break
		}
		sleepCtx(ctx, time.Until(at))
		select {
		case sem <- struct{}{}:
		default:
			failures.Add(1) // the generator itself cannot keep up
			continue
		}
		cycles.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := cycle(k); err != nil {
				failures.Add(1)
				errs.add(err)
				return
			}
			completed.Add(1)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	wcancel()
	wwg.Wait()
	after := snapAll(ctx, insts, false)
	smp.stop(ctx)
	res.DurationS = round3(elapsed.Seconds())
	hs := hsH.Summary()
	res.Latency = &hs
	cr := &ChurnResult{Cycles: cycles.Load(), Completed: completed.Load(), Failures: failures.Load(), Resumed: resumed.Load(), Fresh: fresh.Load(),
		Handshake: hs, Subscribe: subH.Summary(), Resume: resH.Summary(), RatePerS: round3(float64(completed.Load()) / elapsed.Seconds())}
	cr.Handshake.Curve, cr.Subscribe.Curve, cr.Resume.Curve = nil, nil, nil
	res.Churn = cr
	exp := make([]int, len(insts))
	for t := range insts {
		// cycles k with k%n == t cover feeds (k/n)%F.
		n := (int(cycles.Load()) - t + len(insts) - 1) / len(insts)
		exp[t] = min(max(n, 0), cfg.Feeds)
		cr.DistinctFds += exp[t]
	}
	for i, in := range insts {
		ir := instanceResult(in, before[i], after[i])
		ir.ExpectedFeeds = exp[i]
		res.Instances = append(res.Instances, ir)
		res.Total.CPUS += ir.CPUS
		res.Total.ListenersStarted += ir.ListenersStarted
		res.Total.ExpectedFeeds += ir.ExpectedFeeds
	}
	res.Total.Name = "total"
	smp.fill(res)
	res.Errors = append(res.Errors, errs.list()...)
	res.check("no failed cycles", cr.Failures == 0, "%d of %d cycles failed", cr.Failures, cr.Cycles)
	res.check("every cycle completed", cr.Completed == cr.Cycles, "%d of %d", cr.Completed, cr.Cycles)
	res.check("resume served from the lingering Feed", cr.Fresh == 0, "%d resumed, %d fresh snapshots", cr.Resumed, cr.Fresh)
	r.markFleet(res, int(cycles.Load()))
	checkListeners(res, exp)
	return nil
}
