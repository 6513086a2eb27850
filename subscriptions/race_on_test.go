//go:build race

package subscriptions

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// allocation counts wobble by a few.
const raceEnabled = true
