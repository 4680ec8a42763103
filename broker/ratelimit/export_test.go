package ratelimit

// HeldForTest is the number of holds a MemInFlight keeps.
func HeldForTest(f *MemInFlight) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.held)
}
