package loadtest

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram geometry: values are microseconds; each power of two is split
// into histSub linear sub-buckets (relative error below 1/histSub ≈ 1.6%).
// Values of histSub µs and below are exact. The top bucket absorbs
// everything from 2^histMaxExp µs (about 18 minutes) up.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histMaxExp  = 30
	histBuckets = (histMaxExp - histSubBits + 2) * histSub
)

// Histogram records latencies. The zero value is ready; Record, Merge and
// the readers are safe for concurrent use (every field is atomic), and
// Record never allocates.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sumUS  atomic.Uint64
	maxUS  atomic.Uint64
}

// bucketOf maps a value in µs to its bucket.
func bucketOf(us uint64) int {
	if us < histSub {
		return int(us)
	}
	exp := bits.Len64(us) - 1 // us in [2^exp, 2^(exp+1))
	if exp > histMaxExp {
		return histBuckets - 1
	}
	sub := (us >> (exp - histSubBits)) & (histSub - 1)
	i := (exp-histSubBits+1)*histSub + int(sub)
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// bucketUpper is the largest value (µs) that falls in bucket i.
func bucketUpper(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	exp := i/histSub + histSubBits - 1
	sub := uint64(i % histSub)
	lo := uint64(1)<<exp | sub<<(exp-histSubBits)
	return lo + (uint64(1) << (exp - histSubBits)) - 1
}

// Record adds one latency; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.counts[bucketOf(us)].Add(1)
	h.n.Add(1)
	h.sumUS.Add(us)
	for {
		m := h.maxUS.Load()
		if us <= m || h.maxUS.CompareAndSwap(m, us) {
			return
		}
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max is the largest recorded value (exact, µs resolution).
func (h *Histogram) Max() time.Duration { return time.Duration(h.maxUS.Load()) * time.Microsecond }

// Mean is the average recorded value; 0 when empty.
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sumUS.Load()/n) * time.Microsecond
}

// Quantile returns the value at quantile q in [0, 1] (the upper edge of
// its bucket, capped at the exact maximum); 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	q = math.Min(math.Max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	maxUS := h.maxUS.Load()
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(bucketUpper(i), maxUS)) * time.Microsecond
		}
	}
	return time.Duration(maxUS) * time.Microsecond
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sumUS.Add(o.sumUS.Load())
	m := o.maxUS.Load()
	for {
		cur := h.maxUS.Load()
		if m <= cur || h.maxUS.CompareAndSwap(cur, m) {
			return
		}
	}
}

// Sparse is a histogram in transferable form: the non-empty buckets.
type Sparse struct {
	Buckets [][2]uint64 `json:"b,omitempty"` // (bucket index, count)
	SumUS   uint64      `json:"sum_us"`
	MaxUS   uint64      `json:"max_us"`
}

// Sparse returns h's non-empty buckets.
func (h *Histogram) Sparse() Sparse {
	s := Sparse{SumUS: h.sumUS.Load(), MaxUS: h.maxUS.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return s
}

// fromSparse rebuilds a histogram; out-of-range bucket indexes are
// ignored.
func fromSparse(s Sparse) *Histogram {
	h := &Histogram{}
	var n uint64
	for _, b := range s.Buckets {
		if b[0] < histBuckets {
			h.counts[b[0]].Add(b[1])
			n += b[1]
		}
	}
	h.n.Store(n)
	h.sumUS.Store(s.SumUS)
	h.maxUS.Store(s.MaxUS)
	return h
}

// LatencySummary is a histogram's digest in milliseconds.
type LatencySummary struct {
	Count  uint64  `json:"count"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p999_ms"`
	MaxMS  float64 `json:"max_ms"`
	// Curve is (quantile, ms) points for charts.
	Curve [][2]float64 `json:"curve,omitempty"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// curveQuantiles are the points of LatencySummary.Curve.
var curveQuantiles = []float64{0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1}

// Summary digests h.
func (h *Histogram) Summary() LatencySummary {
	s := LatencySummary{
		Count: h.Count(), MeanMS: ms(h.Mean()),
		P50MS: ms(h.Quantile(0.5)), P90MS: ms(h.Quantile(0.9)), P99MS: ms(h.Quantile(0.99)),
		P999MS: ms(h.Quantile(0.999)), MaxMS: ms(h.Max()),
	}
	if s.Count > 0 {
		for _, q := range curveQuantiles {
			s.Curve = append(s.Curve, [2]float64{q, ms(h.Quantile(q))})
		}
	}
	return s
}
