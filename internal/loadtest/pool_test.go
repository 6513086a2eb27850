package loadtest

import (
	"fmt"
	"testing"
)

func TestAssignmentNeedsMatchSlots(t *testing.T) {
	tests := []struct{ total, targets, feeds, perUser int }{
		{1, 1, 1, 1}, {20, 1, 2, 5}, {10000, 1, 10, 50}, {30001, 2, 10, 50}, {7, 3, 5, 2}, {100, 4, 1, 100},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			need := slotsNeeded(tc.total, tc.targets, tc.feeds, tc.perUser)
			spec := poolSpec{Targets: make([]poolTarget, tc.targets), Feeds: tc.feeds, ConnsPerUser: tc.perUser}
			used := map[[3]int]int{}
			maxSlot := make([][]int, tc.targets)
			for t := range maxSlot {
				maxSlot[t] = make([]int, tc.feeds)
				for f := range maxSlot[t] {
					maxSlot[t][f] = -1
				}
			}
			for i := 0; i < tc.total; i++ {
				tg, f, s := spec.assign(i)
				used[[3]int{tg, f, s}]++
				maxSlot[tg][f] = max(maxSlot[tg][f], s)
			}
			for k, n := range used {
				if n > tc.perUser {
					t.Fatalf("slot %v has %d connections, cap %d", k, n, tc.perUser)
				}
			}
			for tg := range need {
				for f := range need[tg] {
					if need[tg][f] != maxSlot[tg][f]+1 {
						t.Fatalf("target %d feed %d: need %d slots, assignment uses %d", tg, f, need[tg][f], maxSlot[tg][f]+1)
					}
				}
			}
			exp := expectedFeeds(tc.total, tc.targets, tc.feeds)
			for tg := range exp {
				n := 0
				for f := 0; f < tc.feeds; f++ {
					if maxSlot[tg][f] >= 0 {
						n++
					}
				}
				if exp[tg] != n {
					t.Fatalf("target %d: expectedFeeds %d, assignment uses %d", tg, exp[tg], n)
				}
			}
		})
	}
}

func TestSlowSpread(t *testing.T) {
	tests := []struct {
		frac  float64
		total int
		want  int
	}{
		{0, 100, 0}, {0.1, 20, 2}, {0.1, 10000, 1000}, {0.5, 7, 3}, {1, 9, 9}, {0.001, 999, 0}, {0.001, 1000, 1},
	}
	for _, tc := range tests {
		s := poolSpec{SlowFraction: tc.frac, Total: tc.total, Targets: make([]poolTarget, 1), Feeds: 1, ConnsPerUser: 1}
		n := 0
		for i := 0; i < tc.total; i++ {
			if s.slow(i) {
				n++
			}
		}
		if n != tc.want {
			t.Errorf("fraction %v of %d: %d slow, want %d", tc.frac, tc.total, n, tc.want)
		}
		var reading int64
		for _, row := range populationCounts(s) {
			for _, v := range row {
				reading += v
			}
		}
		if reading != int64(tc.total-n) {
			t.Errorf("populationCounts counts %d reading connections, want %d", reading, tc.total-n)
		}
	}
}

func TestPoolSpecValidate(t *testing.T) {
	good := func() poolSpec {
		return poolSpec{Kind: KindFiregate, Targets: []poolTarget{{WSURL: "ws://127.0.0.1:1", Tokens: [][]string{{"a", "b"}}}},
			Total: 4, Count: 4, Feeds: 1, ConnsPerUser: 2, DocsPerFeed: 10, DialConcurrency: 1}
	}
	tests := []struct {
		name string
		mod  func(*poolSpec)
		ok   bool
	}{
		{"good", func(*poolSpec) {}, true},
		{"no targets", func(s *poolSpec) { s.Targets = nil }, false},
		{"range past total", func(s *poolSpec) { s.First = 1 }, false},
		{"too few tokens", func(s *poolSpec) { s.Total, s.Count = 5, 5 }, false},
		{"no feeds", func(s *poolSpec) { s.Feeds = 0 }, false},
		{"baseline needs no tokens", func(s *poolSpec) { s.Kind = KindBaseline; s.Targets[0].Tokens = nil }, true},
		{"zero dial concurrency", func(s *poolSpec) { s.DialConcurrency = 0 }, false},
	}
	for _, tc := range tests {
		s := good()
		tc.mod(&s)
		if err := s.validate(); (err == nil) != tc.ok {
			t.Errorf("%s: validate = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestPoolStatusMerge(t *testing.T) {
	var h1, h2 Histogram
	h1.Record(1000)
	h2.Record(2000000)
	a := poolStatus{Conns: 2, Ready: 2, Deliveries: 5, PerTarget: []TargetCount{{1, 2}}, FeedReady: []int64{1, 1}, Latency: h1.Sparse(), CloseCodes: map[int]int64{1000: 1}}
	b := poolStatus{Conns: 3, Ready: 1, Deliveries: 7, PerTarget: []TargetCount{{1, 1}, {2, 3}}, FeedReady: []int64{0, 0, 4}, Latency: h2.Sparse(), CloseCodes: map[int]int64{1000: 2, 4009: 1}}
	a.merge(b)
	if a.Conns != 5 || a.Ready != 3 || a.Deliveries != 12 {
		t.Fatalf("merged counters: %+v", a)
	}
	if len(a.PerTarget) != 2 || a.PerTarget[0] != (TargetCount{2, 3}) || a.PerTarget[1] != (TargetCount{2, 3}) {
		t.Fatalf("per target: %+v", a.PerTarget)
	}
	if fmt.Sprint(a.FeedReady) != "[1 1 4]" {
		t.Fatalf("feed ready: %v", a.FeedReady)
	}
	if a.CloseCodes[1000] != 3 || a.CloseCodes[4009] != 1 {
		t.Fatalf("close codes: %v", a.CloseCodes)
	}
	if fromSparse(a.Latency).Count() != 2 {
		t.Fatalf("latency count: %d", fromSparse(a.Latency).Count())
	}
}
