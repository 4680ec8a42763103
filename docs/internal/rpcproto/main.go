// Command rpcproto writes the google/rpc protos a client needs to decode
// the broker's errors (status.proto, error_details.proto, code.proto) into
// the consumer proto bundle. No module that the build reaches ships them as
// .proto text, so they are printed from the descriptors compiled into
// google.golang.org/genproto/googleapis/rpc — the very ones the broker
// encodes its errors with, at the version go.mod pins. `make bundle` runs it.
//
// Usage: go run ./docs/internal/rpcproto -o DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	// Options are read through the descriptor package's types.
	_ "google.golang.org/protobuf/types/descriptorpb"
)

func main() {
	out := flag.String("o", "", "bundle directory to write google/rpc/*.proto into")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: rpcproto -o DIR")
		os.Exit(2)
	}
	if err := write(*out); err != nil {
		fmt.Fprintf(os.Stderr, "rpcproto: %v\n", err)
		os.Exit(1)
	}
}

// files are the google/rpc files of the bundle.
var files = []protoreflect.FileDescriptor{
	status.File_google_rpc_status_proto,
	errdetails.File_google_rpc_error_details_proto,
	code.File_google_rpc_code_proto,
}

func write(dir string) error {
	for _, fd := range files {
		text, err := Print(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", fd.Path(), err)
		}
		path := filepath.Join(dir, filepath.FromSlash(fd.Path()))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}
