package wire

import (
	"slices"
	"testing"
)

func TestParseAndJoinFieldPath(t *testing.T) {
	for in, want := range map[string][]string{
		"a":              {"a"},
		"a.b_2":          {"a", "b_2"},
		"`a.b`.c":        {"a.b", "c"},
		"`x\\`y`":        {"x`y"},
		"`back\\\\`":     {"back\\"},
		"`org_id`":       {"org_id"},
		"`my-field`.`0`": {"my-field", "0"},
	} {
		got, err := ParseFieldPath(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ".", "a.", ".a", "a..b", "`open", "`a`b", "a`b`"} {
		if _, err := ParseFieldPath(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := JoinFieldPath([]string{"org_id"}); got != "org_id" {
		t.Fatal(got)
	}
	if got := JoinFieldPath([]string{"a.b", "x`y", "ok"}); got != "`a.b`.`x\\`y`.ok" {
		t.Fatal(got)
	}
}

func FuzzParseFieldPath(f *testing.F) {
	for _, s := range []string{"a.b", "`a.b`.c", "`x\\`y`", "a..b", "`", "é.`ü`"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		segs, err := ParseFieldPath(s)
		if err != nil {
			return
		}
		// The canonical form parses back to the same segments, and is a
		// fixed point.
		c := JoinFieldPath(segs)
		again, err := ParseFieldPath(c)
		if err != nil || !slices.Equal(again, segs) {
			t.Fatalf("%q → %q → %q (%v)", s, c, again, err)
		}
		if JoinFieldPath(again) != c {
			t.Fatalf("canonical form of %q is not stable", s)
		}
	})
}
