package gateway_test

import (
	"context"
	"testing"

	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/subscriptions/subscriptionstest"
)

// fakeUpstream is subscriptionstest's fake Source for a gateway under
// test: every listener first delivers an empty result (as Firestore does
// for a query matching nothing), then whatever the test emits through
// Listener(t, i). It is always healthy.
type fakeUpstream struct {
	subscriptionstest.Source[subscriptions.Query, *subscriptions.Snapshot]
}

func (f *fakeUpstream) Listen(ctx context.Context, q subscriptions.Query, emit func(*subscriptions.Snapshot)) error {
	emit(&subscriptions.Snapshot{Reset: true})
	return f.Source.Listen(ctx, q, emit)
}

func (*fakeUpstream) Health() error { return nil }

// newFakeEnv builds a gateway whose Hub listens to a fakeUpstream instead
// of Firestore's emulator: for protocol-level tests (handshake, auth,
// limits, framing) that need no real query behaviour. They start no JVM,
// so they run in parallel. e.fs is nil: put and del fail the test.
func newFakeEnv(t *testing.T, o envOpts) (*env, *fakeUpstream) {
	t.Helper()
	src := &fakeUpstream{}
	return buildEnv(t, src, o), src
}

// needFirestore fails the test when e runs on a fake Source.
func (e *env) needFirestore() {
	e.t.Helper()
	if e.fs == nil {
		e.t.Fatal("this env runs on a fake Source: documents need the emulator (newEnv)")
	}
}
