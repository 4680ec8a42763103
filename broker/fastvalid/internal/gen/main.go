// Command gen writes broker/fastvalid/rules_gen.go: the Go checks of the
// protovalidate annotations of every data-API request and response (run
// by go generate in broker/fastvalid; make check-generated runs it into a
// temporary directory and compares). With -test it writes instead the
// checks of the test-only messages of internal/testpb.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/relais-broker/relais/broker/fastvalid/internal/emit"
	"github.com/relais-broker/relais/broker/fastvalid/internal/model"
	"github.com/relais-broker/relais/broker/fastvalid/internal/testpb"
)

func main() {
	out := flag.String("o", "rules_gen.go", "output file")
	test := flag.Bool("test", false, "write the checks of the test-only messages (internal/testpb)")
	flag.Parse()
	if err := run(*out, *test); err != nil {
		fmt.Fprintln(os.Stderr, "fastvalid gen:", err)
		os.Exit(1)
	}
}

func run(out string, test bool) error {
	var src []byte
	if test {
		set, err := model.LoadMessages((*testpb.Kinds)(nil).ProtoReflect().Descriptor())
		if err != nil {
			return err
		}
		src, err = emit.GenerateWith(set, TestOptions)
		if err != nil {
			return err
		}
	} else {
		set, err := model.Load()
		if err != nil {
			return err
		}
		src, err = emit.Generate(set)
		if err != nil {
			return err
		}
	}
	return os.WriteFile(out, src, 0o644)
}

// TestOptions name the test checks apart from the data API's.
var TestOptions = emit.Options{Dispatch: "checkTestKinds", Prefix: "t", Source: "go run ./internal/gen -test"}
