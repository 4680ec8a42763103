package docs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// untar reads a bundle into name → content.
func untar(t *testing.T, data []byte) (map[string]string, []string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	var order []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, hdr.Name)
		if !hdr.ModTime.Equal(bundleTime) || hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("%s: mtime %s uid %d gid %d, want the fixed ones", hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = string(b)
	}
	return files, order
}

func TestBundleIsDeterministic(t *testing.T) {
	t.Parallel()
	mk := func(mtime time.Time) fs.FS {
		return fstest.MapFS{
			"proto/b/y.proto": {Data: []byte("syntax = \"proto3\";\n"), ModTime: mtime, Mode: 0o600},
			"proto/a/x.proto": {Data: []byte("syntax = \"proto2\";\n"), ModTime: mtime.Add(time.Hour), Mode: 0o755},
		}
	}
	one, err := buildBundle(mk(time.Unix(1, 0)), "proto")
	if err != nil {
		t.Fatal(err)
	}
	two, err := buildBundle(mk(time.Now()), "proto")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one, two) {
		t.Fatal("the same files with other mtimes and modes gave other bytes")
	}
	files, order := untar(t, one)
	want := []string{"relais-proto/", "relais-proto/a/", "relais-proto/a/x.proto", "relais-proto/b/", "relais-proto/b/y.proto"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("entries %v, want %v", order, want)
	}
	if files["relais-proto/b/y.proto"] != "syntax = \"proto3\";\n" {
		t.Fatalf("content changed: %q", files["relais-proto/b/y.proto"])
	}
}

// TestBundleHoldsEveryPublicService reads the tree: every service proto
// outside the operators' admin API is in the served bundle, with what a
// code generator needs to compile it.
func TestBundleHoldsEveryPublicService(t *testing.T) {
	t.Parallel()
	data, err := ProtoBundle()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := untar(t, data)
	for _, must := range []string{
		"google/rpc/status.proto", "google/rpc/error_details.proto", "google/rpc/code.proto",
		"buf/validate/validate.proto", "google/protobuf/timestamp.proto", "google/protobuf/descriptor.proto",
		"relais/options/v1/options.proto", "relais/common/v1/common.proto", "relais/credentials/v1/credentials.proto",
	} {
		if _, ok := files[BundleRoot+"/"+must]; !ok {
			t.Errorf("%s missing from the bundle", must)
		}
	}
	if !strings.Contains(files[BundleRoot+"/google/rpc/error_details.proto"], "message BadRequest {") {
		t.Error("error_details.proto has no BadRequest")
	}
	seen := 0
	err = filepath.WalkDir("../proto/relais", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".proto") {
			return err
		}
		rel := strings.TrimPrefix(filepath.ToSlash(path), "../proto/")
		got, ok := files[BundleRoot+"/"+rel]
		switch {
		case strings.HasPrefix(rel, "relais/admin/"):
			if ok {
				t.Errorf("%s: the operators' admin API is in the consumers' bundle", rel)
			}
		case !ok:
			t.Errorf("%s is not in the bundle (run make bundle)", rel)
		default:
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if got != string(src) {
				t.Errorf("%s differs from the tree (run make bundle)", rel)
			}
			seen++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 5 {
		t.Fatalf("only %d public protos found in the tree", seen)
	}
}

func TestServeProtoBundle(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(ServeProtoBundle))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/docs/proto.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	want, _ := ProtoBundle()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/gzip" || !bytes.Equal(body, want) {
		t.Fatalf("status %d, type %q, %d bytes (want %d)", resp.StatusCode, resp.Header.Get("Content-Type"), len(body), len(want))
	}
	// A client that already has it is told so.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/docs/proto.tar.gz", nil)
	if resp.Header.Get("ETag") == "" || resp.Header.Get("Last-Modified") != "" {
		t.Fatalf("ETag %q, Last-Modified %q: the version must be told by the content's hash", resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"))
	}
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	again, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = again.Body.Close()
	if again.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional request: status %d, want 304", again.StatusCode)
	}
}
