package boltlog

import (
	"io"

	bolt "go.etcd.io/bbolt"
)

// WriteSnapshot writes a consistent copy of the log file to w from one
// read transaction, while the writer keeps committing: the online backup
// (relaisctl backup). The copy is a log file boltlog opens and verifies
// like the original. It returns the bytes written.
func (s *Store) WriteSnapshot(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// WriteSnapshot writes a consistent copy of the open log's file to w.
func (l *Log) WriteSnapshot(w io.Writer) (int64, error) { return l.store.WriteSnapshot(w) }
