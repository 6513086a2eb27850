package gateway

import (
	"context"
	"log/slog"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// connLogRate and connLogBurst bound per-connection log lines (authentication failures,
// refused subscriptions and the like) across the whole server, so a flood
// of bad clients cannot flood the logs; what is dropped is counted and
// reported with the next line that gets through.
const (
	connLogRate  = 20 // lines per second
	connLogBurst = 100
)

type logLimiter struct {
	lim        *rate.Limiter
	suppressed atomic.Int64
}

func newLogLimiter() *logLimiter {
	return &logLimiter{lim: rate.NewLimiter(connLogRate, connLogBurst)}
}

// log writes one line through l unless the server-wide budget is spent.
func (ll *logLimiter) log(l *slog.Logger, level slog.Level, msg string, args ...any) {
	if !l.Enabled(context.Background(), level) {
		return
	}
	if !ll.lim.Allow() {
		ll.suppressed.Add(1)
		return
	}
	if n := ll.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed_before", n)
	}
	l.Log(context.Background(), level, msg, args...)
}
