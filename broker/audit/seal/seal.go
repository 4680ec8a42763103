// Package seal is the one implementation of the audit chain format, shared
// by every audit storage (bbolt, PostgreSQL): how a record is sealed into
// the chain, how a checkpoint is signed, and how an export is verified.
//
// A sealed record is the JSON of its chain id, sequence number, the hash
// of the previous record and the record itself; its own hash is the
// SHA-256 of that JSON, appended as a last "hash" member. The stored bytes
// are kept exactly as Seal produces them: the Verifier recomputes the hash
// from the bytes, not from a re-encoding, so old logs keep verifying when
// audit.Record gains a field, and any change of any byte is detected. The
// format is byte-compatible with the logs boltlog wrote before this
// package existed (chain "" is omitted).
package seal

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/relais-broker/relais/broker/audit"
)

// Sealed is one record in its chain. The JSON tags are the stored format:
// changing them breaks every existing log.
type Sealed struct {
	// Chain identifies the chain when several writers (replicas) keep
	// one each; "" for the single chain of an embedded broker.
	Chain  string       `json:"chain,omitempty"`
	Seq    uint64       `json:"seq"`
	Prev   string       `json:"prev"`
	Record audit.Record `json:"record"`
	Hash   string       `json:"hash,omitempty"`
	// Raw is the stored bytes, exactly (set by Seal and Unseal): what a
	// storage writes and what an export carries.
	Raw []byte `json:"-"`
}

// ZeroHash is the Prev of the first record of a chain.
var ZeroHash [32]byte

// Hex is the lower-case hex form of a hash, as stored.
func Hex(h [32]byte) string { return hex.EncodeToString(h[:]) }

// ParseHash decodes a hash written by Hex.
func ParseHash(s string) ([32]byte, error) {
	var h [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, errors.New("seal: a hash is 64 hex digits")
	}
	copy(h[:], b)
	return h, nil
}

// Seal places r at seq after prev in chain and returns the sealed record,
// the bytes to store and its hash (the next record's prev).
func Seal(chain string, seq uint64, prev [32]byte, r audit.Record) (Sealed, []byte, [32]byte, error) {
	if seq == 0 {
		return Sealed{}, nil, [32]byte{}, errors.New("seal: sequence numbers start at 1")
	}
	s := Sealed{Chain: chain, Seq: seq, Prev: Hex(prev), Record: r}
	body, err := json.Marshal(s) // Hash empty: omitted
	if err != nil {
		return Sealed{}, nil, [32]byte{}, fmt.Errorf("seal: encode record %d: %w", seq, err)
	}
	sum := sha256.Sum256(body)
	s.Hash = Hex(sum)
	// Same bytes as json.Marshal(s): Hash is the last member.
	raw := make([]byte, 0, len(body)+len(hashMember)+2*len(sum)+2)
	raw = append(raw, body[:len(body)-1]...)
	raw = append(raw, hashMember...)
	raw = append(raw, s.Hash...)
	raw = append(raw, `"}`...)
	s.Raw = raw
	return s, raw, sum, nil
}

const hashMember = `,"hash":"`

// Unseal decodes stored bytes. It does not check them (the Verifier
// does): queries read tampered records as they are.
func Unseal(raw []byte) (Sealed, error) {
	var s Sealed
	if err := json.Unmarshal(raw, &s); err != nil {
		return Sealed{}, fmt.Errorf("seal: unreadable record: %w", err)
	}
	s.Raw = raw
	return s, nil
}

// Check recomputes the hash of stored bytes from the bytes themselves and
// returns it, or an error when it differs from the stored one.
func Check(raw []byte) ([32]byte, error) {
	var sum [32]byte
	n := len(raw) - len(hashMember) - 64 - 2
	if n < 1 || !bytes.Equal(raw[n:n+len(hashMember)], []byte(hashMember)) || !bytes.HasSuffix(raw, []byte(`"}`)) {
		return sum, errors.New("seal: the stored bytes do not end with the record hash")
	}
	stored, err := ParseHash(string(raw[n+len(hashMember) : len(raw)-2]))
	if err != nil {
		return sum, err
	}
	h := sha256.New()
	h.Write(raw[:n])
	h.Write([]byte("}"))
	copy(sum[:], h.Sum(nil))
	if sum != stored {
		return sum, errors.New("seal: hash mismatch")
	}
	return sum, nil
}
