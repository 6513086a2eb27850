package loadtest

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// The tool re-runs its own executable for the baseline broadcaster
	// and for worker processes; in tests that executable is this binary.
	MaybeRunChild()
	os.Exit(m.Run())
}

// TestQuickAgainstFiregateDev runs hold, fanout and churn at tiny sizes
// against a real `firegate dev` process (built from ./cmd/firegate) and
// Google's Firestore emulator, and checks that the tool's figures are
// sane: every connection subscribed, every commit delivered to every
// subscriber of its Feed exactly once, one Firestore listener per
// distinct Feed as the gateway's firegate_listeners_started_total counts
// them, no errors.
func TestQuickAgainstFiregateDev(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := Quick()
	cfg.Scenarios = []string{ScenarioHold, ScenarioFanout, ScenarioChurn}
	var progress bytes.Buffer
	cfg.Progress = &progress
	start := time.Now()
	rep, err := Run(ctx, cfg)
	t.Logf("quick run took %v", time.Since(start))
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	var table bytes.Buffer
	rep.WriteTable(&table)
	t.Log(table.String())
	if failed := rep.Failed(); len(failed) > 0 {
		t.Fatalf("failed checks:\n%s", strings.Join(failed, "\n"))
	}
	if len(rep.Runs) != 3 {
		t.Fatalf("%d runs, want 3", len(rep.Runs))
	}

	hold := rep.Find(ScenarioHold, KindFiregate)
	if hold == nil || hold.Ready != 20 || hold.Total.Conns != 20 {
		t.Fatalf("hold: %+v", hold)
	}
	if hold.Total.ListenersStarted != 2 || hold.Total.RSSAfter <= 0 || hold.Total.HeapAfter <= hold.Total.HeapBefore {
		t.Fatalf("hold figures: %+v", hold.Total)
	}
	if hold.Total.GoroutinesPerConn <= 0 {
		t.Fatalf("hold: goroutines per connection %v", hold.Total.GoroutinesPerConn)
	}

	fan := rep.Find(ScenarioFanout, KindFiregate)
	if fan == nil {
		t.Fatal("no fanout run")
	}
	// 10 commits/s for 3 s over 2 Feeds of 10 subscribers each.
	if fan.Writes < 20 || fan.Expected != fan.Writes*10 || fan.Deliveries != fan.Expected {
		t.Fatalf("fanout: writes %d, expected %d, delivered %d", fan.Writes, fan.Expected, fan.Deliveries)
	}
	if fan.Latency == nil || fan.Latency.Count != uint64(fan.Deliveries) || fan.Latency.P99MS <= 0 || fan.Latency.MaxMS < fan.Latency.P99MS {
		t.Fatalf("fanout latency: %+v", fan.Latency)
	}
	if fan.Stale != 0 || fan.Skipped != 0 || fan.Dropped != 0 || len(fan.Errors) != 0 {
		t.Fatalf("fanout: stale %d skipped %d dropped %d errors %v", fan.Stale, fan.Skipped, fan.Dropped, fan.Errors)
	}
	if fan.Total.ListenersStarted != 2 || fan.Instances[0].ExpectedFeeds != 2 {
		t.Fatalf("fanout listeners: %+v", fan.Instances)
	}
	if fan.DeliveriesPerS <= 0 || fan.Total.CPUS <= 0 || fan.ServerCPUPerM <= 0 || fan.EmulatorCPUS <= 0 {
		t.Fatalf("fanout rates and CPU: %v/s, server %vs, %v s/M, emulator %vs", fan.DeliveriesPerS, fan.Total.CPUS, fan.ServerCPUPerM, fan.EmulatorCPUS)
	}
	if got := fan.Instances[0].Metrics[`firegate_messages_sent_total{type="changes"}`]; int64(got) < fan.Deliveries {
		t.Fatalf("gateway counted %v changes messages for %d deliveries", got, fan.Deliveries)
	}

	churn := rep.Find(ScenarioChurn, KindFiregate)
	if churn == nil || churn.Churn == nil {
		t.Fatal("no churn run")
	}
	c := churn.Churn
	if c.Cycles < 10 || c.Completed != c.Cycles || c.Failures != 0 || c.Handshake.Count != uint64(2*c.Cycles) {
		t.Fatalf("churn: %+v", c)
	}
	if churn.Total.ListenersStarted != 2 {
		t.Fatalf("churn started %d listeners for 2 Feeds", churn.Total.ListenersStarted)
	}
	if !strings.Contains(progress.String(), "deliveries/s") {
		t.Fatalf("no live progress:\n%s", progress.String())
	}
}

// TestQuickFleetAgainstFiregateDev runs the quick fanout over three
// `firegate dev` processes in fleet mode (--nats): every subscriber gets
// every change and the three instances together start one Firestore
// listener per distinct Feed.
func TestQuickFleetAgainstFiregateDev(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := Quick()
	cfg.Scenarios = []string{ScenarioFanout}
	cfg.Instances = 3
	cfg.NATS = true
	var progress bytes.Buffer
	cfg.Progress = &progress
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	if failed := rep.Failed(); len(failed) > 0 {
		t.Fatalf("failed checks:\n%s", strings.Join(failed, "\n"))
	}
	fan := rep.Find(ScenarioFanout, KindFiregate)
	if fan == nil || len(fan.Instances) != 3 {
		t.Fatalf("fanout: %+v", fan)
	}
	if fan.FleetFeeds != 2 || fan.Total.ListenersStarted != 2 {
		t.Fatalf("fleet: %d listeners for %d distinct Feeds over 3 instances, want 2 for 2", fan.Total.ListenersStarted, fan.FleetFeeds)
	}
	if fan.Writes < 20 || fan.Expected < fan.Writes*9 || fan.Deliveries != fan.Expected {
		t.Fatalf("fanout: writes %d, expected %d, delivered %d", fan.Writes, fan.Expected, fan.Deliveries)
	}
	found := false
	for _, c := range fan.Checks {
		if strings.Contains(c.Name, "fleet-wide") && c.OK {
			found = true
		}
	}
	if !found {
		t.Fatalf("no passing fleet-wide listener check in %+v", fan.Checks)
	}
}
