package gateway

import "github.com/firegate/firegate/internal/clock"

// Clock is the gateway's source of time (internal/clock): expiry timers,
// the writer's linger and the drain schedule all use it, so tests drive
// them with a clock.Fake. Nil in Deps means the wall clock.
type Clock = clock.Clock

// Timer is a stoppable AfterFunc timer.
type Timer = clock.Timer
