package loadtest

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBucketsCoverEveryValue(t *testing.T) {
	vals := []uint64{0, 1, 63, 64, 65, 127, 128, 129, 1000, 1 << 20, 1<<20 + 1, 1<<30 - 1, 1 << 30, 1<<31 - 1}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		vals = append(vals, r.Uint64N(1<<31))
	}
	for _, v := range vals {
		b := bucketOf(v)
		if b < 0 || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d out of range", v, b)
		}
		if up := bucketUpper(b); up < v {
			t.Fatalf("bucketUpper(bucketOf(%d)) = %d < value", v, up)
		}
		if b > 0 && bucketUpper(b-1) >= v {
			t.Fatalf("value %d also fits bucket %d (upper %d)", v, b-1, bucketUpper(b-1))
		}
		if v >= histSub {
			if rel := float64(bucketUpper(b)-v) / float64(v); rel > 1.0/histSub {
				t.Fatalf("value %d: bucket upper %d, relative error %.4f", v, bucketUpper(b), rel)
			}
		}
	}
}

func TestBucketTopAbsorbsHugeValues(t *testing.T) {
	for _, v := range []uint64{1 << 31, 1 << 40, math.MaxUint64} {
		if b := bucketOf(v); b != histBuckets-1 {
			t.Errorf("bucketOf(%d) = %d, want the top bucket %d", v, b, histBuckets-1)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	h.Record(-time.Second) // counts as zero
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 0},
		{0.5, 500 * time.Millisecond},
		{0.9, 900 * time.Millisecond},
		{0.99, 990 * time.Millisecond},
		{1, 1000 * time.Millisecond},
		{2, 1000 * time.Millisecond}, // clamped
	}
	for _, tc := range tests {
		got := h.Quantile(tc.q)
		if d := math.Abs(float64(got-tc.want)) / float64(max(tc.want, time.Millisecond)); d > 1.0/histSub {
			t.Errorf("Quantile(%v) = %v, want %v (±1.6%%)", tc.q, got, tc.want)
		}
	}
	if h.Count() != 1001 {
		t.Errorf("Count = %d, want 1001", h.Count())
	}
	if h.Max() != time.Second {
		t.Errorf("Max = %v, want 1s", h.Max())
	}
}

func TestHistogramEmpty(t *testing.T) {
	var h Histogram
	if h.Quantile(0.99) != 0 || h.Mean() != 0 || h.Max() != 0 {
		t.Fatal("empty histogram must report zeros")
	}
	if s := h.Summary(); s.Count != 0 || s.Curve != nil {
		t.Fatalf("empty summary = %+v", s)
	}
}

func TestHistogramMergeAndSparse(t *testing.T) {
	var a, b Histogram
	for i := 0; i < 100; i++ {
		a.Record(time.Duration(i) * time.Microsecond)
		b.Record(time.Duration(i) * time.Second)
	}
	a.Merge(&b)
	if a.Count() != 200 || a.Max() != 99*time.Second {
		t.Fatalf("merged: count %d max %v", a.Count(), a.Max())
	}
	c := fromSparse(a.Sparse())
	for _, q := range []float64{0.1, 0.5, 0.75, 0.99, 1} {
		if a.Quantile(q) != c.Quantile(q) {
			t.Errorf("q%v: %v after round trip, want %v", q, c.Quantile(q), a.Quantile(q))
		}
	}
	if c.Mean() != a.Mean() {
		t.Errorf("mean %v, want %v", c.Mean(), a.Mean())
	}
	// Bucket indexes out of range are ignored.
	d := fromSparse(Sparse{Buckets: [][2]uint64{{histBuckets, 5}, {3, 1}}})
	if d.Count() != 1 {
		t.Errorf("count %d, want 1", d.Count())
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(1000, func() { h.Record(1234 * time.Microsecond) }); n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			d += 997 * time.Microsecond
			h.Record(d % time.Second)
		}
	})
}
