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
	if len(s) != 2*len(h) {
		return h, errHashDigits
	}
	for i := range h {
		hi, ok1 := fromHex(s[2*i])
		lo, ok2 := fromHex(s[2*i+1])
		if !ok1 || !ok2 {
			return [32]byte{}, errHashDigits
		}
		h[i] = hi<<4 | lo
	}
	return h, nil
}

var errHashDigits = errors.New("seal: a hash is 64 hex digits")

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// IsHex reports whether s is Hex(h), without allocating: the check a
// storage makes of every record's prev.
func IsHex(s string, h [32]byte) bool {
	if len(s) != 2*len(h) {
		return false
	}
	for i, b := range h {
		if s[2*i] != hexDigits[b>>4] || s[2*i+1] != hexDigits[b&0xF] {
			return false
		}
	}
	return true
}

// Seal places r at seq after prev in chain and returns the sealed record,
// the bytes to store and its hash (the next record's prev). The bytes
// are json.Marshal's of the Sealed (Hash last), encoded once, by hand
// (encode.go): no reflection, one buffer.
func Seal(chain string, seq uint64, prev [32]byte, r audit.Record) (Sealed, []byte, [32]byte, error) {
	if seq == 0 {
		return Sealed{}, nil, [32]byte{}, errors.New("seal: sequence numbers start at 1")
	}
	var ph [64]byte
	hex.Encode(ph[:], prev[:])
	prevHex := string(ph[:])
	size := 480 + len(chain) + len(r.RequestID) + len(r.TraceID) + len(r.Consumer) + len(r.Operator) + len(r.Target) +
		len(r.CertSerial) + len(r.Recipient) + len(r.Method) + len(r.Purpose) + len(r.CaseReference) + len(r.Agent) +
		len(r.Subject) + len(r.Source) + len(r.Code) + len(r.Reason) + len(r.Note) + len(r.DisclosureReference)
	for _, f := range r.FieldsRequested {
		size += len(f) + 3
	}
	for _, f := range r.FieldsReturned {
		size += len(f) + 3
	}
	raw, err := appendSealed(make([]byte, 0, size), chain, seq, prevHex, &r)
	if err != nil {
		return Sealed{}, nil, [32]byte{}, fmt.Errorf("seal: encode record %d: %w", seq, err)
	}
	sum := sha256.Sum256(raw) // Hash empty: omitted
	// Same bytes as json.Marshal(s) with the hash: its last member.
	raw = append(raw[:len(raw)-1], hashMember...)
	raw = hex.AppendEncode(raw, sum[:])
	raw = append(raw, `"}`...)
	s := Sealed{Chain: chain, Seq: seq, Prev: prevHex, Record: r, Hash: string(raw[len(raw)-66 : len(raw)-2]), Raw: raw}
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
