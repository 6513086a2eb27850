package loadtest

import (
	"context"
	"sync"
	"time"

	"github.com/firegate/firegate/wire"
)

// paceAt returns when event k (counted from 0) of a schedule of rate events
// per second that starts at start is due. rate must be positive.
func paceAt(start time.Time, k int64, rate float64) time.Time {
	return start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
}

// errorSamples keeps the text of the first maxErrorSamples errors added. It
// is safe for concurrent use; the zero value is empty and ready.
type errorSamples struct {
	mu sync.Mutex // guards s
	s  []string
}

// add records err's text unless maxErrorSamples are kept already.
func (e *errorSamples) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.s) < maxErrorSamples {
		e.s = append(e.s, err.Error())
	}
}

// list returns a copy of the kept texts, oldest first.
func (e *errorSamples) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.s...)
}

// dialWelcome connects to u with token and waits for the welcome frame,
// recording the time from dial to welcome in h. The caller closes the
// returned client. Refusals by a limit wrap errRefused.
func (r *runner) dialWelcome(ctx context.Context, u, token string, h *Histogram) (*client, error) {
	t0 := time.Now()
	c, err := r.connect(ctx, u, token)
	if err != nil {
		return nil, err
	}
	if _, err := c.await(ctx, wire.TypeWelcome); err != nil {
		c.ws.CloseNow()
		return nil, err
	}
	h.Record(time.Since(t0))
	return c, nil
}

// instanceResult is in's part of a run measured between the snapshots
// before and after: the CPU it used, the listeners it started and its
// counter deltas. Scenario-specific fields are left zero.
func instanceResult(in *Instance, before, after instSnap) InstanceResult {
	return InstanceResult{
		Name:             in.Name,
		PID:              in.PID,
		CPUS:             round3((after.cpu - before.cpu).Seconds()),
		ListenersStarted: listenerDelta(before, after),
		Metrics:          counterDeltasOf(before, after),
	}
}
