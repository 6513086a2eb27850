// Package loadtest is Firegate's load generator (cmd/firegate-loadtest is
// its command line). It measures, on loopback only, how many sockets a
// gateway holds and at what memory cost, how fast one change reaches every
// subscriber, what the auth path sustains, how reconnects and slow readers
// behave — and measures the same things against a minimal broadcaster
// written directly on coder/websocket in the same run, so that every figure
// comes with its ratio to the library floor (docs/benchmarks.md).
//
// It speaks the wire protocol through package wire only; it never imports
// the gateway. It starts what it needs: Google's Firestore emulator
// (internal/emulator), N `firegate dev` processes sharing it, the baseline
// broadcaster (package baseline, run in a child process) and, beyond Config.ConnsPerProcess connections, worker
// processes of its own (the running executable re-run in a child role, see
// MaybeRunChild) — or it drives gateways that already run.
//
// Scenarios (each bounded in connections and time, stopping by itself):
//
//   - hold: N subscribed connections held idle; server memory per
//     connection (RSS, heap and stacks after a GC, goroutines).
//   - fanout: S subscribers on F Feeds, a writer committing documents at
//     rate R (or closed-loop "max"); latency from commit to receipt,
//     deliveries per second, server and emulator CPU per delivery.
//   - churn: connect, subscribe, disconnect, reconnect with resume;
//     handshake latency, failures, Firestore listeners started.
//   - authstorm: handshakes at a rising rate until refusals or latency rise.
//   - slow: fanout where a fraction of the subscribers stop reading.
//   - baseline: hold and fanout against the coder/websocket broadcaster,
//     unbatched and batched.
//
// Every Firegate run checks that the gateway started exactly one Firestore
// listener per distinct Feed and never had more Feeds than that.
package loadtest
