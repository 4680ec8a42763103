package boltlog

import (
	"context"
	"encoding/json"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/audit/seal"
)

// RechainForTest forges the log the way a careful attacker would: record
// from is altered, every record after it re-chained with valid hashes,
// and every checkpoint re-signed with k.
func RechainForTest(tx *bolt.Tx, from uint64, k seal.Signer) error {
	recs := tx.Bucket(bucketRecords)
	prev := seal.ZeroHash
	if raw := recs.Get(seqKey(from - 1)); raw != nil {
		s, err := seal.Unseal(raw)
		if err != nil {
			return err
		}
		if prev, err = seal.ParseHash(s.Hash); err != nil {
			return err
		}
	}
	heads := map[uint64]string{}
	for seq := from; ; seq++ {
		raw := recs.Get(seqKey(seq))
		if raw == nil {
			break
		}
		s, err := seal.Unseal(raw)
		if err != nil {
			return err
		}
		if seq == from {
			s.Record.Purpose = "forged"
		}
		_, out, hash, err := seal.Seal(s.Chain, seq, prev, s.Record)
		if err != nil {
			return err
		}
		if err := recs.Put(seqKey(seq), out); err != nil {
			return err
		}
		prev = hash
		heads[seq] = seal.Hex(hash)
	}
	c := tx.Bucket(bucketCheckpoints).Cursor()
	for key, v := c.First(); key != nil; key, v = c.Next() {
		var cp seal.Checkpoint
		if err := json.Unmarshal(v, &cp); err != nil {
			return err
		}
		if h, ok := heads[cp.Seq]; ok {
			cp.Head = h
		}
		cp, err := seal.Sign(context.Background(), k, cp)
		if err != nil {
			return err
		}
		raw, _ := json.Marshal(cp)
		if err := tx.Bucket(bucketCheckpoints).Put(key, raw); err != nil {
			return err
		}
	}
	return nil
}
