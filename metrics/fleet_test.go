package metrics

import (
	"runtime"
	"runtime/debug"
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

func TestBuildVersion(t *testing.T) {
	stamped := &debug.BuildInfo{Main: debug.Module{Version: "v1.0.0"},
		Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "vcsrev"}}}
	unstamped := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "-trimpath", Value: "true"}}}
	tests := []struct {
		name                      string
		bi                        *debug.BuildInfo
		linkVersion, linkRev      string
		wantVersion, wantRevision string
	}{
		{"link-time version wins over the module version", stamped, "v9.9.9", "", "v9.9.9", "vcsrev"},
		{"module version without a link-time one", stamped, "", "", "v1.0.0", "vcsrev"},
		{"VCS stamp wins over the link-time revision", stamped, "", "linkrev", "v1.0.0", "vcsrev"},
		{"link-time revision without a VCS stamp (docker build)", unstamped, "v2.0.0", "linkrev", "v2.0.0", "linkrev"},
		{"nothing stamped", unstamped, "", "", "(devel)", "unknown"},
		{"no build info", nil, "", "", "unknown", "unknown"},
		{"no build info, link-time values", nil, "v3", "r3", "v3", "r3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, r := buildVersion(tt.bi, tt.linkVersion, tt.linkRev)
			if v != tt.wantVersion || r != tt.wantRevision {
				t.Errorf("buildVersion = %q, %q, want %q, %q", v, r, tt.wantVersion, tt.wantRevision)
			}
		})
	}
}

// TestBuildVersionReadsLinkTimeVariables checks that BuildVersion reads the
// package variables that -ldflags -X sets (a test binary has no VCS stamp).
func TestBuildVersionReadsLinkTimeVariables(t *testing.T) {
	oldV, oldR := Version, Revision
	t.Cleanup(func() { Version, Revision = oldV, oldR })
	Version, Revision = "v9.9.9-test", "0123abcd"
	v, r := BuildVersion()
	if v != "v9.9.9-test" {
		t.Errorf("BuildVersion() version = %q, want the link-time Version", v)
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				t.Fatalf("test binary carries vcs.revision %q; this test needs an unstamped binary", s.Value)
			}
		}
	}
	if r != "0123abcd" {
		t.Errorf("BuildVersion() revision = %q, want the link-time Revision", r)
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
