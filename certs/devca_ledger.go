package certs

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/relais-broker/relais/broker/identity"
)

// Files of the dev CA's ledger: what it issued and what it revoked, one
// line per certificate. They hold serials, identities (SIRETs of public
// bodies, operator ids) and dates, no personal data.
const (
	devIssuedFile  = "issued.txt"
	devRevokedFile = "revoked.txt"
)

func withDir(ca *DevCA, err error) func(string) (*DevCA, error) {
	return func(dir string) (*DevCA, error) {
		if err != nil {
			return nil, err
		}
		ca.dir = dir
		return ca, nil
	}
}

// recordIssued appends "serial uri not-after" to issued.txt.
func (ca *DevCA) recordIssued(leaf *x509.Certificate) error {
	uri := "-"
	if len(leaf.URIs) == 1 {
		uri = leaf.URIs[0].String()
	}
	ca.ledger.Lock()
	defer ca.ledger.Unlock()
	return ca.appendLedger(devIssuedFile, identity.SerialHex(leaf)+" "+uri+" "+leaf.NotAfter.UTC().Format(time.RFC3339))
}

// Revoke implements Authority: the serial is appended to revoked.txt
// (revoking twice is not an error). An unknown serial is refused.
func (ca *DevCA) Revoke(_ context.Context, serial string) error {
	n := identity.NormaliseSerial(serial)
	if n == "" {
		return fmt.Errorf("%w: serial %q is not hexadecimal", ErrInvalidRequest, serial)
	}
	ca.ledger.Lock()
	defer ca.ledger.Unlock()
	issued, err := ca.readLedger(devIssuedFile)
	if err != nil {
		return err
	}
	if !slicesContainsSerial(issued, n) {
		return fmt.Errorf("%w: this CA issued no certificate with serial %s", ErrInvalidRequest, n)
	}
	revoked, err := ca.readLedger(devRevokedFile)
	if err != nil {
		return err
	}
	if slicesContainsSerial(revoked, n) {
		return nil
	}
	return ca.appendLedger(devRevokedFile, n+" "+ca.clock().UTC().Format(time.RFC3339))
}

// RevokedSerials implements CRLSource.
func (ca *DevCA) RevokedSerials(context.Context) ([]string, error) {
	ca.ledger.Lock()
	defer ca.ledger.Unlock()
	lines, err := ca.readLedger(devRevokedFile)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, l[0])
	}
	return out, nil
}

// SerialsFor implements Authority: the unexpired certificates issued to
// the consumer.
func (ca *DevCA) SerialsFor(_ context.Context, siret string) ([]string, error) {
	ca.ledger.Lock()
	defer ca.ledger.Unlock()
	lines, err := ca.readLedger(devIssuedFile)
	if err != nil {
		return nil, err
	}
	want := identity.URI(identity.KindConsumer, siret).String()
	now := ca.clock()
	var out []string
	for _, l := range lines {
		if len(l) < 3 || l[1] != want {
			continue
		}
		if end, err := time.Parse(time.RFC3339, l[2]); err == nil && now.Before(end) {
			out = append(out, l[0])
		}
	}
	return out, nil
}

func slicesContainsSerial(lines [][]string, serial string) bool {
	for _, l := range lines {
		if l[0] == serial {
			return true
		}
	}
	return false
}

// readLedger returns the space-separated fields of each line of name.
func (ca *DevCA) readLedger(name string) ([][]string, error) {
	f, err := os.Open(filepath.Join(ca.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("certs: dev ca ledger: %w", err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 0 {
			out = append(out, fields)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("certs: dev ca ledger %s: %w", name, err)
	}
	return out, nil
}

func (ca *DevCA) appendLedger(name, line string) error {
	f, err := os.OpenFile(filepath.Join(ca.dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("certs: dev ca ledger: %w", err)
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("certs: dev ca ledger: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("certs: dev ca ledger: %w", err)
	}
	return f.Close()
}
