package boltlog

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/audit"
)

// stored is a record as written: its place in the chain and its hash.
// The hash covers the JSON of Seq, Prev and Record (Hash empty), so any
// change to any field, or to the order, breaks the chain.
type stored struct {
	Seq    uint64       `json:"seq"`
	Prev   string       `json:"prev"`
	Record audit.Record `json:"record"`
	Hash   string       `json:"hash,omitempty"`
}

// seal computes the hash and returns the bytes to store.
func (s stored) seal() ([]byte, [32]byte, error) {
	s.Hash = ""
	body, err := json.Marshal(s)
	if err != nil {
		return nil, [32]byte{}, err
	}
	sum := sha256.Sum256(body)
	s.Hash = hexOf(sum)
	raw, err := json.Marshal(s)
	return raw, sum, err
}

// check recomputes the hash of a stored record.
func (s stored) check() bool {
	want := s.Hash
	_, sum, err := s.seal()
	return err == nil && hexOf(sum) == want
}

func hexOf(h [32]byte) string { return hex.EncodeToString(h[:]) }

// checkpoint is a signed statement: the chain had this head at this seq.
// A boundary checkpoint marks where retention purged the records before
// it: verification starts after it.
type checkpoint struct {
	Seq      uint64    `json:"seq"`
	Head     string    `json:"head"`
	Time     time.Time `json:"time"`
	Boundary bool      `json:"boundary,omitempty"`
	Sig      string    `json:"sig,omitempty"`
}

// message is what is signed.
func (c checkpoint) message() []byte {
	return []byte("relais-audit-checkpoint\n" + strconv.FormatUint(c.Seq, 10) + "\n" + c.Head + "\n" +
		c.Time.UTC().Format(time.RFC3339Nano) + "\n" + strconv.FormatBool(c.Boundary))
}

func (c checkpoint) sign(key ed25519.PrivateKey) checkpoint {
	c.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.message()))
	return c
}

func (c checkpoint) verify(pub ed25519.PublicKey) bool {
	sig, err := base64.StdEncoding.DecodeString(c.Sig)
	return err == nil && ed25519.Verify(pub, c.message(), sig)
}

func putCheckpoint(tx *bolt.Tx, key ed25519.PrivateKey, c checkpoint) error {
	raw, err := json.Marshal(c.sign(key))
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketCheckpoints).Put(seqKey(c.Seq), raw); err != nil {
		return fmt.Errorf("audit: checkpoint: %w", err)
	}
	return nil
}
