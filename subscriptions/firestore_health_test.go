package subscriptions

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/firegate/firegate/wire"
)

// TestRebuildAllEndsListenersWithUnavailable is what the health monitor
// does after an outage: running listeners end with a transient
// UpstreamError (so their Feeds rebuild and diff), the source stays usable.
func TestRebuildAllEndsListenersWithUnavailable(t *testing.T) {
	s := fsNewSource(t, FirestoreConfig{HealthInterval: -1})
	q := Query{Collection: "tasks", Filters: []wire.Filter{{Field: "org_id", Op: "==", Value: "o"}}}
	l := fsListen(t, s, q)
	select {
	case <-l.snaps:
	case <-time.After(fsWait):
		t.Fatal("no first snapshot")
	}
	if n := s.rebuildAll(); n != 1 {
		t.Fatalf("rebuilt %d listeners, want 1", n)
	}
	select {
	case err := <-l.done:
		l.done <- err // for the cleanup
		var ue *UpstreamError
		if !errors.As(err, &ue) || ue.Code != codes.Unavailable || ue.Permanent() {
			t.Fatalf("listener ended with %v", err)
		}
	case <-time.After(fsWait):
		t.Fatal("listener not ended")
	}
	// A new listener works, and none is left registered.
	l2 := fsListen(t, s, q)
	select {
	case <-l2.snaps:
	case <-time.After(fsWait):
		t.Fatal("no snapshot after rebuild")
	}
	l2.cancel()
	err := <-l2.done
	l2.done <- err
	s.mu.Lock()
	left := len(s.listeners)
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d listeners still registered", left)
	}
}
