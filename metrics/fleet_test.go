package metrics

import (
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	version, revision := BuildVersion()
	for _, mf := range mfs {
		if mf.GetName() != "firegate_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("build_info has %d series, want 1", len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		if m.GetGauge().GetValue() != 1 {
			t.Errorf("build_info = %v, want 1", m.GetGauge().GetValue())
		}
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		want := map[string]string{"version": version, "revision": revision, "go_version": runtime.Version()}
		for k, v := range want {
			if labels[k] != v || v == "" {
				t.Errorf("label %s = %q, want %q (non-empty)", k, labels[k], v)
			}
		}
		if len(labels) != len(want) {
			t.Errorf("labels %v, want exactly %v", labels, want)
		}
		return
	}
	t.Fatal("firegate_build_info not registered")
}

func TestBuildVersionPrefersLinkTimeVersion(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v9.9.9-test"
	if v, _ := BuildVersion(); v != "v9.9.9-test" {
		t.Fatalf("BuildVersion() = %q, want the link-time Version", v)
	}
	Version = ""
	if v, _ := BuildVersion(); v == "" {
		t.Fatal("BuildVersion() is empty without a link-time Version")
	}
}

func TestFleetMetricsExistAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	for i, r := range FleetRoles {
		if got := testutil.ToFloat64(m.Fleet.Feeds[i]); got != 0 || FleetRole(i).String() != r {
			t.Errorf("fleet_feeds{role=%s} = %v, want 0", r, got)
		}
	}
	for i, c := range LeaseChanges {
		if got := testutil.ToFloat64(m.Fleet.LeaseChanges[i]); got != 0 || LeaseChange(i).String() != c {
			t.Errorf("fleet_lease_changes_total{change=%s} = %v, want 0", c, got)
		}
	}
	if n := testutil.CollectAndCount(reg, "firegate_fleet_feeds"); n != len(FleetRoles) {
		t.Errorf("fleet_feeds has %d series, want %d", n, len(FleetRoles))
	}
	if n := testutil.CollectAndCount(reg, "firegate_fleet_lease_changes_total"); n != len(LeaseChanges) {
		t.Errorf("fleet_lease_changes_total has %d series, want %d", n, len(LeaseChanges))
	}
}
