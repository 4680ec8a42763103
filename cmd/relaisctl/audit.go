package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/internal/devenv"
)

// runAuditVerify verifies an audit log file offline with the public key
// alone: what a third party does.
func runAuditVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "relais-dev/audit.db", "the audit log file (stop the broker, or verify a copy taken while it is stopped)")
	pubFile := fs.String("public-key", "relais-dev/keys/"+devenv.AuditPublicKeyFile, "the operator's Ed25519 public key (PEM)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relaisctl audit verify: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	pub, err := devenv.LoadPublicKey(*pubFile)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", err)
		return 1
	}
	rep, err := boltlog.Verify(*db, pub)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", err)
		return 1
	}
	if !rep.OK() {
		fmt.Fprintf(stdout, "FAILED at seq %d: %s\n", rep.BadSeq, rep.Problem)
		return 1
	}
	fmt.Fprintf(stdout, "OK: %d records (seq %d to %d), %d signed checkpoints verified\n", rep.Records, rep.FirstSeq, rep.LastSeq, rep.Checkpoints)
	return 0
}
