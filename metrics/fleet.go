package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// FleetRole labels fleet_feeds{role}: what this instance does for a Feed in
// fleet mode.
type FleetRole uint8

const (
	// FleetOwned: this instance holds the Feed's lease and runs its
	// Firestore listener.
	FleetOwned FleetRole = iota
	// FleetMirrored: the Feed is fed from the owner's stream.
	FleetMirrored
	// FleetLocal: NATS was unreachable when the Feed opened, so it runs a
	// per-instance listener, as without fleet mode (degraded).
	FleetLocal
	numFleetRoles
)

// LeaseChange labels fleet_lease_changes_total{change}.
type LeaseChange uint8

const (
	LeaseAcquired LeaseChange = iota // this instance became a Feed's owner
	LeaseReleased                    // it gave the lease up (linger, drain)
	LeaseLost                        // a renewal failed (NATS gone, lease taken)
	numLeaseChanges
)

var (
	fleetRoleNames   = [numFleetRoles]string{"owned", "mirrored", "local"}
	leaseChangeNames = [numLeaseChanges]string{"acquired", "released", "lost"}
)

func (v FleetRole) String() string   { return fleetRoleNames[v] }
func (v LeaseChange) String() string { return leaseChangeNames[v] }

// Label value lists, in constant order.
var (
	FleetRoles   = fleetRoleNames[:]
	LeaseChanges = leaseChangeNames[:]
)

// FleetMetrics are the fleet-mode collectors (all at zero without
// FIREGATE_NATS_URL).
type FleetMetrics struct {
	// Feeds counts this instance's Feeds by role.
	Feeds [numFleetRoles]prometheus.Gauge
	// LeaseChanges counts lease events.
	LeaseChanges [numLeaseChanges]prometheus.Counter
	// Degraded is 1 while NATS is unreachable.
	Degraded prometheus.Gauge
	// StreamLag observes the time from an owner publishing a change batch
	// to this instance applying it.
	StreamLag prometheus.Histogram
}

// newFleet creates the fleet collectors and appends them to cs.
func newFleet(cs *[]prometheus.Collector) FleetMetrics {
	var f FleetMetrics
	fv := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "fleet_feeds",
		Help: "Fleet mode: this instance's Feeds by role (owned: runs the Firestore listener; mirrored: fed by the owner's stream; local: NATS unreachable)."}, []string{"role"})
	for i, r := range FleetRoles {
		f.Feeds[i] = fv.WithLabelValues(r)
	}
	lv := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "fleet_lease_changes_total",
		Help: "Fleet mode: Feed ownership leases acquired, released (linger, drain) and lost."}, []string{"change"})
	for i, c := range LeaseChanges {
		f.LeaseChanges[i] = lv.WithLabelValues(c)
	}
	f.Degraded = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "fleet_degraded",
		Help: "Fleet mode: 1 while NATS is unreachable and new Feeds run per-instance listeners."})
	f.StreamLag = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "fleet_stream_lag_seconds",
		Help: "Fleet mode: from the owner publishing a change batch to this instance applying it.", Buckets: LatencyBuckets})
	*cs = append(*cs, fv, lv, f.Degraded, f.StreamLag)
	return f
}

// Version is the release version reported by firegate_build_info; set it
// at link time (-ldflags "-X github.com/firegate/firegate/metrics.Version=v1.2.3",
// as the Dockerfile does from its VERSION build argument). Empty means the
// main module's version from the build info ("(devel)" for a local build).
var Version string

// Revision is the source revision reported by firegate_build_info when the
// Go toolchain stamped none: set it at link time (-ldflags
// "-X github.com/firegate/firegate/metrics.Revision=<commit>", as the
// Dockerfile does from its REVISION build argument). A build inside Docker
// has no .git (it is not in the build context), so the toolchain records no
// vcs.revision there. Empty means "unknown" in that case.
var Revision string

// buildInfo returns firegate_build_info{version,revision,go_version} = 1.
func buildInfo() prometheus.Collector {
	version, revision := BuildVersion()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "build_info",
		Help: "Always 1; the labels name the running build."}, []string{"version", "revision", "go_version"})
	g.WithLabelValues(version, revision, runtime.Version()).Set(1)
	return g
}

// BuildVersion returns the version (Version, else the main module's
// version, else "unknown") and the revision (the VCS revision the Go
// toolchain stamped, else Revision, else "unknown").
func BuildVersion() (version, revision string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return buildVersion(bi, Version, Revision)
}

// buildVersion is BuildVersion for the build info bi (nil when the binary
// has none) and the link-time values linkVersion and linkRevision.
func buildVersion(bi *debug.BuildInfo, linkVersion, linkRevision string) (version, revision string) {
	version = linkVersion
	if version == "" && bi != nil {
		version = bi.Main.Version
	}
	if version == "" {
		version = "unknown"
	}
	if bi != nil {
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.revision" && kv.Value != "" {
				revision = kv.Value
			}
		}
	}
	if revision == "" {
		revision = linkRevision
	}
	if revision == "" {
		revision = "unknown"
	}
	return version, revision
}
