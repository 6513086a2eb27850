package subscriptionstest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/subscriptions/subscriptionstest"
)

var _ subscriptions.Source = (*subscriptionstest.Source[subscriptions.Query, *subscriptions.Snapshot])(nil)

func TestSourceDrivesListeners(t *testing.T) {
	var src subscriptionstest.Source[string, int]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan int, 1)
	returned := make(chan error, 2)
	go func() { returned <- src.Listen(context.Background(), "q0", func(n int) { got <- n }) }()
	go func() { returned <- src.Listen(ctx, "q1", func(int) {}) }()

	l0 := src.Listener(t, 0)
	l1 := src.Listener(t, 1)
	if src.Count() != 2 {
		t.Fatalf("Count = %d, want 2", src.Count())
	}
	// The order of the two Listen calls is the scheduler's: find q0.
	if l0.Query() != "q0" {
		l0, l1 = l1, l0
	}
	if l0.Query() != "q0" || l1.Query() != "q1" {
		t.Fatalf("queries %q %q", l0.Query(), l1.Query())
	}

	// Emit returns once the consumer has the snapshot.
	l0.Emit(t, 7)
	select {
	case n := <-got:
		if n != 7 {
			t.Fatalf("emitted %d, want 7", n)
		}
	default:
		t.Fatal("Emit returned before emit was called")
	}

	// Fail makes Listen return the error.
	boom := errors.New("upstream unavailable")
	l0.Fail(t, boom)
	if err := <-returned; !errors.Is(err, boom) || !l0.Ended() {
		t.Fatalf("Listen returned %v (ended %v), want %v", err, l0.Ended(), boom)
	}

	// A listener whose context ends returns ctx.Err().
	if l1.Ended() {
		t.Fatal("listener ended before its context")
	}
	cancel()
	if err := <-returned; !errors.Is(err, context.Canceled) || l1.Context().Err() == nil {
		t.Fatalf("Listen returned %v after cancel", err)
	}
}
