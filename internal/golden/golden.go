// Package golden keeps generated documentation files in step with the
// code they are generated from: a test renders the text and Check compares
// it with the committed file, or rewrites the file when -update is given.
package golden

import (
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files instead of comparing them")

// Check fails t when the file at path does not hold want; with -update it
// writes want to path instead.
func Check(t *testing.T, path, want string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v (run go test with -update)", path, err)
	}
	if string(got) != want {
		t.Fatalf("%s is stale: run `make generate` (go test ./... -run TestDocsInStep -update)", path)
	}
}
