// Package subscriptionstest is a fake listen source for tests: the test
// decides what each listener sees (snapshots, an upstream failure), so
// protocol-level tests of the Hub and of the gateway run without
// Firestore's emulator and without timing. End-to-end tests keep the real
// emulator (subscriptions.FirestoreSource).
//
// Source is generic over the query and snapshot types so that the
// subscriptions package's own tests can use it without an import cycle:
//
//	var src subscriptionstest.Source[subscriptions.Query, *subscriptions.Snapshot]
//	hub, err := subscriptions.NewHub(&src, cfg) // *Source is a subscriptions.Source
package subscriptionstest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/firegate/firegate/internal/testkit"
)

// Wait bounds every wait of this package: for a Listen call to arrive,
// for a listener to take a snapshot and for the consumer to process it.
const Wait = 10 * time.Second

// TB is the part of testing.TB the helpers need.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// Source records every Listen call as a Listener, in call order. The zero
// value is ready to use; it is safe for concurrent use.
type Source[Q, S any] struct {
	mu        sync.Mutex
	listeners []*Listener[Q, S]
}

// Listener is one Listen call: it runs until its context ends, the test
// hands it an error (Fail), and delivers what the test hands it (Emit).
type Listener[Q, S any] struct {
	q     Q
	ctx   context.Context
	snaps chan S
	acks  chan struct{}
	errs  chan error
	done  chan struct{}
}

// Listen blocks until ctx ends (returning ctx.Err()) or the test fails the
// listener (returning that error); it calls emit with each snapshot the
// test emits, on this goroutine.
func (s *Source[Q, S]) Listen(ctx context.Context, q Q, emit func(S)) error {
	l := &Listener[Q, S]{
		q: q, ctx: ctx,
		snaps: make(chan S),
		acks:  make(chan struct{}),
		errs:  make(chan error),
		done:  make(chan struct{}),
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	defer close(l.done)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case snap := <-l.snaps:
			emit(snap)
			l.acks <- struct{}{}
		case err := <-l.errs:
			return err
		}
	}
}

// Count is the number of Listen calls so far.
func (s *Source[Q, S]) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.listeners)
}

// Listener waits (up to Wait) for the i-th Listen call (0-based) and
// returns it.
func (s *Source[Q, S]) Listener(t TB, i int) *Listener[Q, S] {
	t.Helper()
	testkit.CheckFor(t, Wait, time.Millisecond, func() error {
		if n := s.Count(); n <= i {
			return fmt.Errorf("%d Listen calls, waiting for listener %d", n, i)
		}
		return nil
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listeners[i]
}

// Query is what the listener was asked to listen to.
func (l *Listener[Q, S]) Query() Q { return l.q }

// Context is the listener's context: it ends when its consumer stops
// listening.
func (l *Listener[Q, S]) Context() context.Context { return l.ctx }

// Emit hands snap to the listener's consumer and waits until the consumer
// has processed it (emit returned).
func (l *Listener[Q, S]) Emit(t TB, snap S) {
	t.Helper()
	select {
	case l.snaps <- snap:
	case <-l.done:
		t.Fatal("emit: listener already ended")
	case <-time.After(Wait):
		t.Fatal("emit: listener not receiving")
	}
	select {
	case <-l.acks:
	case <-time.After(Wait):
		t.Fatal("emit: snapshot not processed")
	}
}

// Fail makes Listen return err and waits for it to return.
func (l *Listener[Q, S]) Fail(t TB, err error) {
	t.Helper()
	select {
	case l.errs <- err:
	case <-l.done:
		t.Fatal("fail: listener already ended")
	case <-time.After(Wait):
		t.Fatal("fail: listener not receiving")
	}
	<-l.done
}

// Ended reports whether Listen has returned.
func (l *Listener[Q, S]) Ended() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}
