package audit

import (
	"crypto/rand"
	"encoding/hex"
)

// NewRequestID returns a random 128-bit request id in hex: the key that
// ties a response header, a log line and an audit record together.
func NewRequestID() string {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	return hex.EncodeToString(raw[:])
}
