package devmode

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/firegate/firegate/internal/testkit"
)

func simulations(t *testing.T, h http.Handler) []simStatus {
	t.Helper()
	w := do(t, h, http.MethodGet, "/dev/simulate", "")
	if w.Code != http.StatusOK {
		t.Fatalf("GET /dev/simulate: %d", w.Code)
	}
	var res struct {
		Simulations []simStatus `json:"simulations"`
	}
	decode(t, w, &res)
	return res.Simulations
}

// orgTasks returns the tasks of org by id.
func orgTasks(t *testing.T, c *firestore.Client, org string) map[string]map[string]any {
	t.Helper()
	docs, err := c.Collection("tasks").Where("org_id", "==", org).Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, d := range docs {
		out[d.Ref.ID] = d.Data()
	}
	return out
}

func TestSimulateActivity(t *testing.T) {
	h, c := testHandler(t)
	ctx := context.Background()
	if err := Seed(ctx, c); err != nil {
		t.Fatal(err)
	}
	seeded := orgTasks(t, c, OrgAcme)
	globexBefore := orgTasks(t, c, OrgGlobex)

	w := do(t, h, http.MethodPost, "/dev/simulate?on=1&org=org_acme&rate=50", "")
	if w.Code != http.StatusOK {
		t.Fatalf("start: %d %s", w.Code, w.Body.String())
	}
	var st simStatus
	decode(t, w, &st)
	if st != (simStatus{Org: OrgAcme, On: true, Rate: 50}) {
		t.Errorf("start response %+v", st)
	}
	if got := simulations(t, h); len(got) != 1 || got[0] != st {
		t.Errorf("running: %+v", got)
	}
	// It adds tasks in the org and modifies existing ones.
	testkit.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		added, modified := 0, 0
		for id, d := range orgTasks(t, c, OrgAcme) {
			if strings.HasPrefix(id, simIDPrefix) {
				added++
				if d["org_id"] != OrgAcme || d["title"] == "" {
					return testkit.Stop(fmt.Errorf("simulated task %s: %v", id, d))
				}
				if _, ok := d["created_at"].(time.Time); !ok {
					return testkit.Stop(fmt.Errorf("simulated task %s has created_at %#v", id, d["created_at"]))
				}
			} else if old, ok := seeded[id]; ok && (old["status"] != d["status"] || old["visibility"] != d["visibility"] || old["title"] != d["title"]) {
				modified++
			}
		}
		if added == 0 || modified == 0 {
			return fmt.Errorf("the simulation has added %d and modified %d tasks, want both", added, modified)
		}
		return nil
	})

	// on=0 stops it: the loop has ended when the response comes.
	w = do(t, h, http.MethodPost, "/dev/simulate?on=0&org=org_acme", "")
	if w.Code != http.StatusOK {
		t.Fatalf("stop: %d %s", w.Code, w.Body.String())
	}
	var stopped simStatus
	decode(t, w, &stopped)
	if stopped != (simStatus{Org: OrgAcme, On: false}) {
		t.Errorf("stop response %+v", stopped)
	}
	if got := simulations(t, h); len(got) != 0 {
		t.Errorf("running after stop: %+v", got)
	}
	testkit.CheckFor(t, 5*time.Second, 20*time.Millisecond, simGoroutines(0))
	// It never touched the other org and never added more than its cap.
	after := orgTasks(t, c, OrgAcme)
	sims := 0
	for id := range after {
		if strings.HasPrefix(id, simIDPrefix) {
			sims++
		}
	}
	if sims > maxSimDocs {
		t.Errorf("%d simulated tasks, cap %d", sims, maxSimDocs)
	}
	if got := orgTasks(t, c, OrgGlobex); fmt.Sprint(got) != fmt.Sprint(globexBefore) {
		t.Errorf("globex tasks changed")
	}
	// Stopping again is a no-op.
	if w := do(t, h, http.MethodPost, "/dev/simulate?on=0&org=org_acme", ""); w.Code != http.StatusOK {
		t.Errorf("second stop: %d", w.Code)
	}
}

func TestSimulateLimitsAndClose(t *testing.T) {
	h, _ := testHandler(t)
	start := func(org, rate string) int {
		t.Helper()
		q := url.Values{"on": {"1"}, "org": {org}}
		if rate != "" {
			q.Set("rate", rate)
		}
		return do(t, h, http.MethodPost, "/dev/simulate?"+q.Encode(), "").Code
	}
	// Slow rates: nothing is written during the test.
	for i := range MaxSimulations {
		if code := start(fmt.Sprintf("org_%d", i), "0.01"); code != http.StatusOK {
			t.Fatalf("simulation %d: %d", i, code)
		}
	}
	if code := start("org_extra", "0.01"); code != http.StatusTooManyRequests {
		t.Errorf("simulation %d: %d, want 429", MaxSimulations+1, code)
	}
	// Restarting a running org at the cap changes its rate.
	if code := start("org_0", "0.02"); code != http.StatusOK {
		t.Errorf("restart at the cap: %d", code)
	}
	got := simulations(t, h)
	if len(got) != MaxSimulations || got[0] != (simStatus{Org: "org_0", On: true, Rate: 0.02}) {
		t.Errorf("running: %+v", got)
	}
	testkit.CheckFor(t, 5*time.Second, 20*time.Millisecond, simGoroutines(MaxSimulations))
	// Close stops them all and refuses new ones.
	h.Close()
	// Close returns once every loop has called wg.Done, its last act; the
	// goroutines may still be unwinding their return, so wait for them to
	// be gone rather than counting at once.
	testkit.CheckFor(t, 5*time.Second, 10*time.Millisecond, simGoroutines(0))
	if code := start("org_0", "1"); code != http.StatusServiceUnavailable {
		t.Errorf("start after Close: %d, want 503", code)
	}
	if got := simulations(t, h); len(got) != 0 {
		t.Errorf("running after Close: %+v", got)
	}
}

func TestParseSimulateQuery(t *testing.T) {
	tests := []struct {
		query    string
		want     simRequest
		wantErr  string
		wantCode int
	}{
		{query: "on=1&org=org_acme", want: simRequest{On: true, Org: "org_acme", Rate: 1}},
		{query: "on=true&org=o&rate=50", want: simRequest{On: true, Org: "o", Rate: 50}},
		{query: "on=1&org=o&rate=0.01", want: simRequest{On: true, Org: "o", Rate: 0.01}},
		{query: "on=1&org=o&rate=0.0099", wantErr: "out of range"},
		{query: "on=0&org=o", want: simRequest{Org: "o", Rate: 1}},
		{query: "on=1&org=o&rate=50.0001", wantErr: "out of range"},
		{query: "on=1&org=o&rate=0", wantErr: "out of range"},
		{query: "on=1&org=o&rate=-1", wantErr: "out of range"},
		{query: "on=1&org=o&rate=NaN", wantErr: "not a number"},
		{query: "on=1&org=o&rate=Inf", wantErr: "not a number"},
		{query: "on=1&org=o&rate=fast", wantErr: "not a number"},
		{query: "org=o", wantErr: "on must be"},
		{query: "on=yes&org=o", wantErr: "on must be"},
		{query: "on=1", wantErr: "org:"},
		{query: "on=1&org=a+b", wantErr: "org:"},
		{query: "on=1&org=o&x=1", wantErr: "unknown parameter"},
		{query: "on=1&on=0&org=o", wantErr: "given 2 times"},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		got, err := parseSimulateQuery(q)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err %v, want %q", tt.query, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v", tt.query, got, err, tt.want)
		}
	}
	h, _ := testHandler(t)
	if w := do(t, h, http.MethodPost, "/dev/simulate?on=1&org=o&rate=51", ""); w.Code != http.StatusBadRequest {
		t.Errorf("rate 51 over HTTP: %d", w.Code)
	}
}

// FuzzParseSimulateQuery checks that an accepted query is within bounds.
func FuzzParseSimulateQuery(f *testing.F) {
	for _, s := range []string{"on=1&org=o&rate=2", "on=0&org=o", "on=1&org=o&rate=1e-300", "on=1&org=o&rate=0x1p5", "rate=50&on=t&org=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, err := parseSimulateQuery(q)
		if err != nil {
			return
		}
		if !(req.Rate >= MinSimulationRate && req.Rate <= MaxSimulationRate) || checkID(req.Org) != nil {
			t.Fatalf("accepted %+v", req)
		}
		// The ticker interval must be positive.
		if time.Duration(float64(time.Second)/req.Rate) <= 0 {
			t.Fatalf("rate %g gives a non-positive interval", req.Rate)
		}
	})
}
