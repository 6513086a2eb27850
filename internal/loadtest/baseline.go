package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/firegate/firegate/internal/loadtest/baseline"
	"github.com/firegate/firegate/wire"
)

// broadcastFrame encodes the `changes` frame a Firegate subscriber with id
// s1 would get for write w of Feed g.
func broadcastFrame(run string, g int, w int64, docs int, now time.Time, padding string) []byte {
	org := feedOrg(run, g)
	id := docID(run, g, int(w%int64(docs)))
	data, _ := json.Marshal(docData(org, w, now.UnixNano(), padding))
	f := wire.ChangesFrame(uint64(w+1), now, []wire.Change{{
		Kind: wire.KindModified, ID: id, Path: "tasks/" + id, Data: data, UpdateTime: now.UTC().Format(time.RFC3339Nano),
	}})
	return f.AppendTo(nil, quotedS1)
}

var quotedS1 = wire.QuoteID("s1")

// Environment of child processes (see MaybeRunChild).
const (
	envRole    = "FIREGATE_LOADTEST_ROLE"
	envAddr    = "FIREGATE_LOADTEST_ADDR"
	envBatched = "FIREGATE_LOADTEST_BATCHED"
)

// startBaseline starts a broadcaster child process (this executable
// re-run in the baseline role) so that its memory and CPU are its own.
func startBaseline(ctx context.Context, name, kind string, logTo io.Writer) (*Instance, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("failed to find this executable for the baseline: %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		in := newInstance(name, kind, "http://"+addr, "http://"+addr)
		cmd := exec.Command(exe)
		batched := "0"
		if kind == KindBaselineBatched {
			batched = "1"
		}
		cmd.Env = append(os.Environ(), envRole+"=baseline", envAddr+"="+addr, envBatched+"="+batched)
		if err := in.startProcess(cmd, logTo); err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err = in.waitReady(rctx, in.BaseURL+"/healthz")
		cancel()
		if err == nil {
			return in, nil
		}
		in.stop(2 * time.Second)
		lastErr = err
	}
	return nil, lastErr
}

// runBaselineChild is the body of the baseline child process.
func runBaselineChild() error {
	addr := os.Getenv(envAddr)
	if err := checkLoopbackHost(addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("failed to listen on %s: %w", addr, err)
	}
	if _, err := raiseNoFile(); err != nil {
		return err
	}
	b := baseline.New(os.Getenv(envBatched) == "1", broadcastFrame)
	return baseline.Serve(context.Background(), b, ln)
}
