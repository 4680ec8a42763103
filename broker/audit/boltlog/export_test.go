package boltlog

import (
	"crypto/ed25519"
	"encoding/json"

	bolt "go.etcd.io/bbolt"
)

// RechainForTest forges the log the way a careful attacker would: record
// from is altered, every record after it re-chained with valid hashes,
// and every checkpoint re-signed with k.
func RechainForTest(tx *bolt.Tx, from uint64, k ed25519.PrivateKey) error {
	recs := tx.Bucket(bucketRecords)
	prev := hexOf([32]byte{})
	if raw := recs.Get(seqKey(from - 1)); raw != nil {
		var s stored
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		prev = s.Hash
	}
	heads := map[uint64]string{}
	for seq := from; ; seq++ {
		raw := recs.Get(seqKey(seq))
		if raw == nil {
			break
		}
		var s stored
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		if seq == from {
			s.Record.Purpose = "forged"
		}
		s.Prev = prev
		out, hash, err := s.seal()
		if err != nil {
			return err
		}
		if err := recs.Put(seqKey(seq), out); err != nil {
			return err
		}
		prev = hexOf(hash)
		heads[seq] = prev
	}
	c := tx.Bucket(bucketCheckpoints).Cursor()
	for key, v := c.First(); key != nil; key, v = c.Next() {
		var cp checkpoint
		if err := json.Unmarshal(v, &cp); err != nil {
			return err
		}
		if h, ok := heads[cp.Seq]; ok {
			cp.Head = h
		}
		raw, _ := json.Marshal(cp.sign(k))
		if err := tx.Bucket(bucketCheckpoints).Put(key, raw); err != nil {
			return err
		}
	}
	return nil
}
