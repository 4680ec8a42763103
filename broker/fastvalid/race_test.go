//go:build race

package fastvalid

// raceEnabled: the race detector makes sync.Pool (regexp machines) drop
// items, so allocation counts mean nothing under it.
const raceEnabled = true
