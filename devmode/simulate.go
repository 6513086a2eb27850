package devmode

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Simulation tuning.
const (
	// DefaultSimulationRate is the rate of a simulate request without rate.
	DefaultSimulationRate = 1.0
	// maxSimDocs bounds the tasks one simulation has added and not yet
	// deleted, keeping result sets small (the emulator re-sends whole
	// results on every write).
	maxSimDocs = 8
	// simIDPrefix marks the tasks a simulation adds; it deletes only those.
	simIDPrefix = "sim-"
	// maxSimFailures consecutive failed writes end a simulation.
	maxSimFailures = 20
	// simWriteTimeout bounds one simulated write.
	simWriteTimeout = 5 * time.Second
	// simInitialIDs bounds how many existing task ids a simulation loads
	// to modify.
	simInitialIDs = 100
)

var simTitles = []string{
	"Review the pull request", "Call the customer", "Update the roadmap", "Triage the bug queue",
	"Draft the blog post", "Rotate the API keys", "Plan the sprint", "Clean up the dashboards",
	"Order new laptops", "Answer the support ticket", "Refactor the billing code", "Book the meeting room",
}

// simulation is one running activity loop for one org. Its fields are set
// before the goroutine starts and never change.
type simulation struct {
	org    string
	rate   float64
	cancel context.CancelFunc
	done   chan struct{} // closed when the loop has returned
}

// simRequest is a parsed /dev/simulate query.
type simRequest struct {
	On   bool
	Org  string
	Rate float64
}

// parseSimulateQuery validates a /dev/simulate query: on (required,
// strconv.ParseBool), org (required, an id as for /dev/token), rate (changes
// per second, in [0.01, 50], default 1).
func parseSimulateQuery(q url.Values) (simRequest, error) {
	var req simRequest
	for k, v := range q {
		switch k {
		case "on", "org", "rate":
		default:
			return req, fmt.Errorf("unknown parameter %q (want on, org, rate)", k)
		}
		if len(v) != 1 {
			return req, fmt.Errorf("parameter %q given %d times", k, len(v))
		}
	}
	on, err := strconv.ParseBool(q.Get("on"))
	if err != nil {
		return req, errors.New("on must be 1 or 0")
	}
	req.On = on
	req.Org = q.Get("org")
	if err := checkID(req.Org); err != nil {
		return req, fmt.Errorf("org: %w", err)
	}
	req.Rate = DefaultSimulationRate
	if s := q.Get("rate"); s != "" {
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(r) || math.IsInf(r, 0) {
			return req, fmt.Errorf("rate: %q is not a number", s)
		}
		if r < MinSimulationRate || r > MaxSimulationRate {
			return req, fmt.Errorf("rate: %g is out of range [%g, %g]", r, MinSimulationRate, MaxSimulationRate)
		}
		req.Rate = r
	}
	return req, nil
}

// simStatus is the JSON of a simulation.
type simStatus struct {
	Org  string  `json:"org"`
	On   bool    `json:"on"`
	Rate float64 `json:"rate,omitempty"`
}

// serveSimulate answers POST /dev/simulate: on=1 starts (or restarts with
// the new rate) the simulation of org, on=0 stops it (a no-op when none
// runs). At most MaxSimulations orgs run at once (429 beyond).
func (h *DevHandler) serveSimulate(w http.ResponseWriter, r *http.Request) {
	req, err := parseSimulateQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !req.On {
		h.stopSimulation(req.Org)
		writeJSON(w, http.StatusOK, simStatus{Org: req.Org, On: false})
		return
	}
	code, msg := h.startSimulation(req.Org, req.Rate)
	if code != http.StatusOK {
		writeError(w, code, msg)
		return
	}
	writeJSON(w, http.StatusOK, simStatus{Org: req.Org, On: true, Rate: req.Rate})
}

// serveSimulations answers GET /dev/simulate: the running simulations,
// sorted by org.
func (h *DevHandler) serveSimulations(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	list := make([]simStatus, 0, len(h.sims))
	for _, s := range h.sims {
		list = append(list, simStatus{Org: s.org, On: true, Rate: s.rate})
	}
	h.mu.Unlock()
	slices.SortFunc(list, func(a, b simStatus) int {
		if a.Org < b.Org {
			return -1
		}
		if a.Org > b.Org {
			return 1
		}
		return 0
	})
	writeJSON(w, http.StatusOK, struct {
		Simulations []simStatus `json:"simulations"`
	}{list})
}

// startSimulation starts org's loop at rate, replacing a running one. It
// returns 200, or the HTTP status and message of a refusal.
func (h *DevHandler) startSimulation(org string, rate float64) (int, string) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return http.StatusServiceUnavailable, "the dev handler is shutting down"
	}
	old := h.sims[org]
	if old == nil && len(h.sims) >= MaxSimulations {
		h.mu.Unlock()
		return http.StatusTooManyRequests, fmt.Sprintf("at most %d organizations can be simulated at once", MaxSimulations)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	s := &simulation{org: org, rate: rate, cancel: cancel, done: make(chan struct{})}
	h.sims[org] = s
	h.wg.Add(1)
	h.mu.Unlock()
	if old != nil {
		old.cancel()
		<-old.done
	}
	h.log.Info("dev: simulating activity", "org", org, "rate", rate)
	go h.runSimulation(ctx, s)
	return http.StatusOK, ""
}

// stopSimulation stops org's loop, if any, and waits for it.
func (h *DevHandler) stopSimulation(org string) {
	h.mu.Lock()
	s := h.sims[org]
	if s != nil {
		delete(h.sims, org)
	}
	h.mu.Unlock()
	if s != nil {
		s.cancel()
		<-s.done
		h.log.Info("dev: simulation stopped", "org", org)
	}
}

// removeSimulation forgets s if it is still org's current simulation (a
// loop that ended by itself).
func (h *DevHandler) removeSimulation(s *simulation) {
	h.mu.Lock()
	if h.sims[s.org] == s {
		delete(h.sims, s.org)
	}
	h.mu.Unlock()
}

// simState is what one loop knows about the tasks of its org.
type simState struct {
	rng   *rand.Rand
	ids   []string // task ids it may modify (seeded and added)
	added []string // task ids it added and may delete
}

// runSimulation adds, modifies and deletes tasks of s.org every 1/rate s
// until ctx ends or maxSimFailures writes in a row fail.
func (h *DevHandler) runSimulation(ctx context.Context, s *simulation) {
	defer h.wg.Done()
	defer close(s.done)
	defer h.removeSimulation(s)
	st := &simState{rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	st.ids = h.loadTaskIDs(ctx, s.org)
	t := time.NewTicker(time.Duration(float64(time.Second) / s.rate))
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := h.simStep(ctx, s.org, st)
		switch {
		case err == nil:
			failures = 0
		case ctx.Err() != nil:
			return
		default:
			failures++
			if failures == 1 {
				h.log.Warn("dev: simulated write failed", "org", s.org, "err", err)
			}
			if failures >= maxSimFailures {
				h.log.Error("dev: simulation stopped after repeated failures", "org", s.org, "failures", failures, "err", err)
				return
			}
		}
	}
}

// loadTaskIDs returns the ids of (up to simInitialIDs) tasks of org.
func (h *DevHandler) loadTaskIDs(ctx context.Context, org string) []string {
	ctx, cancel := context.WithTimeout(ctx, simWriteTimeout)
	defer cancel()
	docs, err := h.cfg.Client.Collection("tasks").Where("org_id", "==", org).Select().
		Limit(simInitialIDs).Documents(ctx).GetAll()
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn("dev: simulation could not list tasks", "org", org, "err", err)
		}
		return nil
	}
	ids := make([]string, 0, len(docs))
	for _, d := range docs {
		ids = append(ids, d.Ref.ID)
	}
	return ids
}

// simStep performs one random write: add a task (while fewer than
// maxSimDocs added ones exist), modify a known task, or delete an added one.
func (h *DevHandler) simStep(ctx context.Context, org string, st *simState) error {
	ctx, cancel := context.WithTimeout(ctx, simWriteTimeout)
	defer cancel()
	tasks := h.cfg.Client.Collection("tasks")
	roll := st.rng.IntN(100)
	switch {
	case len(st.ids) == 0 || (roll < 35 && len(st.added) < maxSimDocs):
		id := simIDPrefix + randomHex(6)
		members := orgMembers(org)
		assignee := ""
		if len(members) > 0 {
			assignee = members[st.rng.IntN(len(members))]
		}
		visibility := "public"
		if st.rng.IntN(5) == 0 {
			visibility = "private"
		}
		_, err := tasks.Doc(id).Create(ctx, map[string]any{
			"org_id":     org,
			"title":      simTitles[st.rng.IntN(len(simTitles))],
			"status":     "open",
			"visibility": visibility,
			"assignee":   assignee,
			"created_at": firestore.ServerTimestamp,
		})
		if err != nil {
			return fmt.Errorf("add %s: %w", id, err)
		}
		st.ids = append(st.ids, id)
		st.added = append(st.added, id)
		return nil
	case roll >= 80 && len(st.added) > 0:
		i := st.rng.IntN(len(st.added))
		id := st.added[i]
		st.added = slices.Delete(st.added, i, i+1)
		st.ids = slices.DeleteFunc(st.ids, func(s string) bool { return s == id })
		if _, err := tasks.Doc(id).Delete(ctx); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
		return nil
	default:
		i := st.rng.IntN(len(st.ids))
		id := st.ids[i]
		var upd firestore.Update
		switch st.rng.IntN(3) {
		case 0:
			upd = firestore.Update{Path: "status", Value: []string{"open", "done"}[st.rng.IntN(2)]}
		case 1:
			upd = firestore.Update{Path: "visibility", Value: []string{"public", "public", "private"}[st.rng.IntN(3)]}
		default:
			upd = firestore.Update{Path: "title", Value: simTitles[st.rng.IntN(len(simTitles))]}
		}
		_, err := tasks.Doc(id).Update(ctx, []firestore.Update{upd})
		if status.Code(err) == codes.NotFound {
			// Deleted meanwhile (from the page, say): forget it.
			st.ids = slices.Delete(st.ids, i, i+1)
			st.added = slices.DeleteFunc(st.added, func(s string) bool { return s == id })
			return nil
		}
		if err != nil {
			return fmt.Errorf("modify %s: %w", id, err)
		}
		return nil
	}
}
