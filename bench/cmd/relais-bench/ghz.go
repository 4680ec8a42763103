package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// ghzRun is the cross-check of one row with the standard tool, next to
// the harness's own measurement of the same row made just before.
type ghzRun struct {
	Command  string
	RPS      float64
	Count    int
	P50, P99 time.Duration
	Errors   int
	Harness  sample
}

// writeProtoset writes the family-quotient service's file and every file
// it imports, dependencies first, as a FileDescriptorSet (what ghz's
// --protoset reads), from the descriptors compiled into this binary.
func writeProtoset(path string) error {
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(familyquotientv1.File_relais_familyquotient_v1_family_quotient_proto)
	raw, err := proto.Marshal(&set)
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}

// ghzCommand is the ghz command line for target at concurrency c, for
// the given duration: the same request, certificates, concurrency and
// connections as the harness.
func (e *env) ghzCommand(bin string, t target, c int, d time.Duration) ([]string, error) {
	protoset := filepath.Join(e.dir, "familyquotient.protoset")
	if err := writeProtoset(protoset); err != nil {
		return nil, err
	}
	data, err := protojson.Marshal(benchRequest())
	if err != nil {
		return nil, err
	}
	dataFile := filepath.Join(e.dir, "request.json")
	if err := os.WriteFile(dataFile, data, 0o644); err != nil {
		return nil, err
	}
	return []string{bin, "--protoset", protoset, "--call", fqService + ".GetFamilyQuotient",
		"--cacert", e.caFile, "--cert", e.clientCert(), "--key", e.clientKey(), "--cname", "localhost",
		"-c", strconv.Itoa(c), "--connections", strconv.Itoa(connections(c)), "-z", d.String(), "--duration-stop", "wait", "-D", dataFile,
		"-O", "json", t.addr}, nil
}

// ghzOutput is the part of ghz's JSON report the harness reads.
type ghzOutput struct {
	Count               int     `json:"count"`
	RPS                 float64 `json:"rps"`
	LatencyDistribution []struct {
		Percentage int           `json:"percentage"`
		Latency    time.Duration `json:"latency"`
	} `json:"latencyDistribution"`
	StatusCodeDistribution map[string]int `json:"statusCodeDistribution"`
}

// runGHZ runs ghz on target t at concurrency c for d and reads its
// report.
func (e *env) runGHZ(bin string, t target, c int, d time.Duration) (*ghzRun, error) {
	args, err := e.ghzCommand(bin, t, c, d)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ghz: %v: %s", err, strings.TrimSpace(errOut.String()))
	}
	var o ghzOutput
	if err := json.Unmarshal(out.Bytes(), &o); err != nil {
		return nil, fmt.Errorf("ghz report: %w", err)
	}
	g := &ghzRun{Command: strings.Join(args, " "), RPS: o.RPS, Count: o.Count}
	for code, n := range o.StatusCodeDistribution {
		if code != "OK" {
			g.Errors += n
		}
	}
	for _, l := range o.LatencyDistribution {
		switch l.Percentage {
		case 50:
			g.P50 = l.Latency
		case 99:
			g.P99 = l.Latency
		}
	}
	return g, nil
}
