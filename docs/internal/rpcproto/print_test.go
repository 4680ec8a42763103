package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
)

// TestPrintedFilesCompileToTheSameDescriptors compiles the printed files
// with protoc and compares the result with the descriptors they were
// printed from: the text means exactly what the broker encodes.
func TestPrintedFilesCompileToTheSameDescriptors(t *testing.T) {
	t.Parallel()
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		if os.Getenv("RELAIS_REQUIRE_CLIENTS") == "1" {
			t.Fatal("RELAIS_REQUIRE_CLIENTS=1 but protoc is not installed")
		}
		t.Skip("protoc not installed (Debian: protobuf-compiler)")
	}
	dir := t.TempDir()
	if err := write(dir); err != nil {
		t.Fatal(err)
	}
	set := filepath.Join(t.TempDir(), "set.pb")
	// docs/proto, the committed bundle, holds the well-known types imported.
	args := []string{"-I", dir, "-I", "../../proto", "--descriptor_set_out=" + set}
	for _, fd := range files {
		args = append(args, fd.Path())
	}
	if out, err := exec.Command(protoc, args...).CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(set)
	if err != nil {
		t.Fatal(err)
	}
	var got descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.GetFile()) != len(files) {
		t.Fatalf("protoc compiled %d files, want %d", len(got.GetFile()), len(files))
	}
	for i, fd := range files {
		want := protodesc.ToFileDescriptorProto(fd)
		have := got.GetFile()[i]
		for _, f := range []*descriptorpb.FileDescriptorProto{want, have} {
			f.SourceCodeInfo = nil
			clearJSONNames(f.GetMessageType())
		}
		if !proto.Equal(want, have) {
			t.Errorf("%s: printed text compiles to\n%v\nwant\n%v", fd.Path(), have, want)
		}
	}
}

// clearJSONNames drops json_name, which protoc fills in and Go's
// descriptors leave out when it is the default.
func clearJSONNames(msgs []*descriptorpb.DescriptorProto) {
	for _, m := range msgs {
		for _, f := range m.GetField() {
			f.JsonName = nil
		}
		clearJSONNames(m.GetNestedType())
	}
}

func TestPrintRefusesProto2(t *testing.T) {
	t.Parallel()
	if _, err := Print(descriptorpb.File_google_protobuf_descriptor_proto); err == nil {
		t.Fatal("a proto2 file was printed")
	}
}
