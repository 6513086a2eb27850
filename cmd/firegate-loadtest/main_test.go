package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firegate/firegate/internal/loadtest"
)

func TestMain(m *testing.M) {
	loadtest.MaybeRunChild() // the baseline broadcaster runs as a child of this binary
	os.Exit(m.Run())
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "-scenarios"},
		{[]string{"--rate", "fast"}, 2, "--rate must be a positive number or max"},
		{[]string{"--rate", "-3"}, 2, "--rate must be"},
		{[]string{"--nope"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, "unexpected arguments"},
		{[]string{"--scenarios", "bogus"}, 1, "unknown scenario"},
		{[]string{"--target", "http://10.1.2.3:8080", "--emulator-host", "127.0.0.1:1"}, 1, "127.0.0.0/8"},
		{[]string{"--duration", "3m"}, 1, "duration"},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(errb.String()+out.String(), tc.want) {
			t.Errorf("run(%v) = %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.want)
		}
	}
}

// TestQuickBaseline runs the baseline scenario end to end through the
// command (the broadcaster is a child process of this test binary) and
// checks the JSON and HTML outputs.
func TestQuickBaseline(t *testing.T) {
	dir := t.TempDir()
	js, page := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.html")
	var out, errb bytes.Buffer
	if code := run([]string{"--quick", "--scenarios", "baseline", "--duration", "1s", "--json", js, "--html", page}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	var rep loadtest.Report
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 3 {
		t.Fatalf("%d runs, want hold, fanout and batched fanout", len(rep.Runs))
	}
	for _, r := range rep.Runs {
		for _, c := range r.Checks {
			if !c.OK {
				t.Errorf("%s/%s: %s: %s", r.Scenario, r.Target, c.Name, c.Detail)
			}
		}
	}
	fan := rep.Find(loadtest.ScenarioFanout, loadtest.KindBaselineBatched)
	if fan == nil || fan.Deliveries == 0 || fan.Deliveries != fan.Expected {
		t.Fatalf("batched fanout: %+v", fan)
	}
	h, err := os.ReadFile(page)
	if err != nil || !bytes.Contains(h, []byte("<svg")) {
		t.Fatalf("HTML report: %v", err)
	}
	if !strings.Contains(errb.String(), "[fanout/baseline") || !strings.Contains(out.String(), "== hold / baseline") {
		t.Fatalf("missing progress or table:\n%s\n%s", errb.String(), out.String())
	}
}
