package loadtest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestPaceAt(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		k    int64
		rate float64
		want time.Duration
	}{
		{0, 10, 0},
		{1, 10, 100 * time.Millisecond},
		{25, 10, 2500 * time.Millisecond},
		{3, 0.5, 6 * time.Second},
		{1000, 1000, time.Second},
	}
	for _, tt := range tests {
		if got := paceAt(start, tt.k, tt.rate).Sub(start); got != tt.want {
			t.Errorf("paceAt(start, %d, %v) = start+%v, want start+%v", tt.k, tt.rate, got, tt.want)
		}
	}
}

func TestErrorSamplesKeepsTheFirstMax(t *testing.T) {
	tests := []struct{ added, kept int }{
		{0, 0},
		{1, 1},
		{maxErrorSamples, maxErrorSamples},
		{maxErrorSamples + 1, maxErrorSamples},
		{3 * maxErrorSamples, maxErrorSamples},
	}
	for _, tt := range tests {
		var e errorSamples
		for i := 0; i < tt.added; i++ {
			e.add(fmt.Errorf("error %d", i))
		}
		got := e.list()
		if len(got) != tt.kept {
			t.Fatalf("added %d: kept %d, want %d", tt.added, len(got), tt.kept)
		}
		for i, s := range got {
			if want := fmt.Sprintf("error %d", i); s != want {
				t.Errorf("added %d: sample %d = %q, want %q (the first ones, in order)", tt.added, i, s, want)
			}
		}
		if len(got) > 0 {
			got[0] = "changed"
			if e.list()[0] == "changed" {
				t.Error("list returns the internal slice, not a copy")
			}
		}
	}
}

// TestErrorSamplesConcurrent adds from many goroutines (go test -race
// checks the locking).
func TestErrorSamplesConcurrent(t *testing.T) {
	var e errorSamples
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.add(errors.New("x"))
			_ = e.list()
		}()
	}
	wg.Wait()
	if n := len(e.list()); n != maxErrorSamples {
		t.Fatalf("kept %d, want %d", n, maxErrorSamples)
	}
}
