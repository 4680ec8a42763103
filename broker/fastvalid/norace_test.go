//go:build !race

package fastvalid

const raceEnabled = false
