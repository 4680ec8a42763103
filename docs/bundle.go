package docs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"time"
)

// protoFS is the consumers' proto bundle (make bundle): the public
// services, their imports, the well-known types and google/rpc. It is
// committed as a directory so that a change shows in review as a diff of
// .proto text, and CI compares it file by file (make check-generated); the
// tarball is built from it when first served.
//
//go:embed proto
var protoFS embed.FS

// BundleRoot is the directory the tarball unpacks into.
const BundleRoot = "relais-proto"

// bundleTime is the modification time of every tarball entry: a fixed
// date, so the same bundle always gives the same bytes.
var bundleTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var (
	bundleOnce  sync.Once
	bundleBytes []byte
	bundleErr   error
)

// ProtoBundle returns the proto bundle as a gzip-compressed tar: entries
// in lexical order under BundleRoot/, mode 0644, owner 0, a fixed mtime,
// no gzip name or time — the same bytes for the same bundle and Go release.
func ProtoBundle() ([]byte, error) {
	bundleOnce.Do(func() { bundleBytes, bundleErr = buildBundle(protoFS, "proto") })
	return bundleBytes, bundleErr
}

func buildBundle(fsys fs.FS, root string) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	// WalkDir visits in lexical order: the entry order is fixed.
	err = fs.WalkDir(fsys, root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := BundleRoot + path[len(root):]
		hdr := &tar.Header{Name: name, ModTime: bundleTime, Format: tar.FormatPAX}
		if d.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
			return tw.WriteHeader(hdr)
		}
		data, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("proto bundle: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ServeProtoBundle serves the bundle as /docs/proto.tar.gz, so that a
// consumer generates its client from exactly the API this broker speaks.
func ServeProtoBundle(w http.ResponseWriter, r *http.Request) {
	data, err := ProtoBundle()
	if err != nil {
		http.Error(w, "proto bundle unavailable", http.StatusInternalServerError)
		return
	}
	// The entries' mtime is fixed, so it says nothing about the version:
	// the ETag (the content's hash) does, and no Last-Modified is sent.
	sum := sha256.Sum256(data)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", `attachment; filename="relais-proto.tar.gz"`)
	http.ServeContent(w, r, "relais-proto.tar.gz", time.Time{}, bytes.NewReader(data))
}
