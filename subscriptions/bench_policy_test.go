package subscriptions

import (
	"testing"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/wire"
)

// BenchmarkFanout10kThroughFilter is BenchmarkFanout10k with the dev
// policy's CEL filter on the Feed: the filter runs once per change, not
// per subscriber.
func BenchmarkFanout10kThroughFilter(b *testing.B) {
	pol, err := authz.ParsePolicy([]byte(`
collections:
  - path: tasks
    scope: org
    filter: "doc.status != 'private' || auth.org_role == 'org:admin'"
`))
	if err != nil {
		b.Fatal(err)
	}
	dec, err := pol.Decide(&authz.Principal{UserID: "u", OrgID: "org_2abc", OrgRole: "org:member"}, "tasks", nil)
	if err != nil {
		b.Fatal(err)
	}
	_, rings, step := hsFanoutSetupFiltered(b, 10_000, dec.Filter)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		step()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(rings)), "ns/subscriber")
}

// BenchmarkNormalizeQueryKey is the Feed-key path of a subscribe:
// normalize and validate a client query, add the scope filter, build the key.
func BenchmarkNormalizeQueryKey(b *testing.B) {
	where := []wire.Filter{
		{Field: "status", Op: "==", Value: "open"},
		{Field: "priority", Op: ">=", Value: int64(2)},
		{Field: "tags", Op: "array-contains-any", Value: []any{"q3", "finance"}},
	}
	order := []wire.Order{{Field: "priority", Direction: "desc"}}
	b.ReportAllocs()
	for b.Loop() {
		q, err := NormalizeQuery("tasks", where, order, 100, 1000)
		if err != nil {
			b.Fatal(err)
		}
		_ = q.WithFilter(wire.Filter{Field: "org_id", Op: "==", Value: "org_2abc"}).Key()
	}
}
