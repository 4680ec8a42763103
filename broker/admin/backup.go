package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"

	"google.golang.org/grpc"

	"github.com/relais-broker/relais/broker/errcat"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// Snapshotter is a store file that writes a consistent copy of itself
// while it serves (boltreg.Store, boltlog.Store: a read transaction's
// WriteTo). It returns the bytes written.
type Snapshotter interface {
	WriteSnapshot(w io.Writer) (int64, error)
}

// BackupFile is one file of an online backup: its name in a data
// directory (registry.db, audit.db) and the store that copies it.
type BackupFile struct {
	Name   string
	Source Snapshotter
}

// backupChunk is the size of the data of one Backup message, well under
// gRPC's default 4 MiB message limit.
const backupChunk = 256 << 10

// backups implements BackupAdminService.
type backups struct {
	adminv1.UnimplementedBackupAdminServiceServer
	files []BackupFile
}

// registerBackups registers BackupAdminService when the broker has
// files to back up (the bbolt stores; PostgreSQL is backed up with its
// own tools).
func (s *Server) registerBackups(srv *grpc.Server) {
	if len(s.cfg.Backups) > 0 {
		srv.RegisterService(s.lazy(&adminv1.BackupAdminService_ServiceDesc), &backups{files: s.cfg.Backups})
	}
}

// Backup streams each file's snapshot in chunks; the last chunk of a file
// carries its size and SHA-256, so the client knows the copy is whole.
// The admin record names the backup, never the content.
func (b *backups) Backup(_ *adminv1.BackupRequest, stream grpc.ServerStreamingServer[adminv1.BackupResponse]) error {
	ctx := stream.Context()
	setTarget(ctx, "online backup")
	for _, f := range b.files {
		w := &chunkWriter{name: f.Name, send: stream.Send, sum: sha256.New()}
		n, err := f.Source.WriteSnapshot(w)
		if err == nil {
			err = w.flush()
		}
		if err == nil && n != w.offset {
			err = errors.New("admin: backup: snapshot size does not match the bytes sent")
		}
		if err == nil {
			err = stream.Send(&adminv1.BackupResponse{File: f.Name, Offset: w.offset, Last: true, Size: n, Sha256: hex.EncodeToString(w.sum.Sum(nil))})
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errcat.Wrap(errcat.Internal, err).Status().Err()
		}
	}
	return nil
}

// chunkWriter cuts a snapshot into messages as the store writes it.
type chunkWriter struct {
	name   string
	send   func(*adminv1.BackupResponse) error
	sum    hash.Hash
	buf    []byte
	offset int64 // of buf's first byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	c.sum.Write(p)
	for len(p) > 0 {
		take := min(backupChunk-len(c.buf), len(p))
		c.buf = append(c.buf, p[:take]...)
		p = p[take:]
		if len(c.buf) == backupChunk {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// flush sends what is buffered (full: a whole chunk).
func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.send(&adminv1.BackupResponse{File: c.name, Offset: c.offset, Data: c.buf})
	c.offset += int64(len(c.buf))
	c.buf = make([]byte, 0, backupChunk)
	return err
}
