package seal_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// oldRecord is a record as boltlog wrote it before this package existed
// (its own sealing code), with HTML characters and a non-UTC time.
const oldRecord = `{"seq":7,"prev":"0100000000000000000000000000000000000000000000000000000000000000","record":{"Time":"2026-11-23T10:00:00.123456789+01:00","RequestID":"req-1","TraceID":"","Consumer":"21990000100005","Operator":"","Target":"","CertSerial":"","Recipient":"","Method":"/m","Purpose":"tarification_sociale","CaseReference":"","Agent":"","Subject":"ab","FieldsRequested":[],"FieldsReturned":["x"],"Source":"","Code":"OK","Reason":"\u003c\u0026\u003e é","Latency":1500000},"hash":"d27418c64bb39e59edba3d6ad584c529c63c2331927d9d35425968c2c124bd76"}`

// oldMessage is what boltlog signed for a checkpoint.
const oldMessage = "relais-audit-checkpoint\n7\nd27418c64bb39e59edba3d6ad584c529c63c2331927d9d35425968c2c124bd76\n2026-11-23T10:00:00.000000005Z\ntrue"

func TestOldRecordBytesStillCheck(t *testing.T) {
	sum, err := seal.Check([]byte(oldRecord))
	if err != nil || seal.Hex(sum) != "d27418c64bb39e59edba3d6ad584c529c63c2331927d9d35425968c2c124bd76" {
		t.Fatalf("old record: %x, %v", sum, err)
	}
	s, err := seal.Unseal([]byte(oldRecord))
	if err != nil || s.Seq != 7 || s.Chain != "" || s.Record.Reason != "<&> é" || s.Record.Latency != 1500*time.Microsecond || !bytes.Equal(s.Raw, []byte(oldRecord)) {
		t.Fatalf("unseal: %+v, %v", s, err)
	}
}

func TestOldCheckpointMessage(t *testing.T) {
	c := seal.Checkpoint{Seq: 7, Head: "d27418c64bb39e59edba3d6ad584c529c63c2331927d9d35425968c2c124bd76",
		Time: time.Date(2026, 11, 23, 11, 0, 0, 5, time.FixedZone("CET", 3600)), Boundary: true}
	if got := string(c.Message()); got != oldMessage {
		t.Fatalf("message %q, want %q", got, oldMessage)
	}
	c.Chain = "replica-2"
	if got := string(c.Message()); got == oldMessage || !strings.Contains(got, "\nchain \"replica-2\"\n") {
		t.Fatalf("a chain id must be signed: %q", got)
	}
}

func record(i int) audit.Record {
	return audit.Record{
		Time: time.Date(2026, 11, 23, 10, i, 0, 0, time.UTC), RequestID: fmt.Sprintf("req-%d", i), Consumer: "21990000100005",
		Method: "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", Purpose: "tarification_sociale",
		Subject: fmt.Sprintf("%064x", i%3), FieldsReturned: []string{"family_quotient.value"}, Code: "OK", Reason: "<x>",
	}
}

func TestSealIsJSONMarshalAndEveryByteCounts(t *testing.T) {
	for _, chain := range []string{"", "replica-1"} {
		var prev [32]byte
		prev[3] = 9
		s, raw, sum, err := seal.Seal(chain, 3, prev, record(3))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(s)
		if !bytes.Equal(raw, want) || !bytes.Equal(s.Raw, raw) || s.Hash != seal.Hex(sum) {
			t.Fatalf("chain %q: sealed bytes\n%s\nwant json.Marshal\n%s", chain, raw, want)
		}
		if got, err := seal.Check(raw); err != nil || got != sum {
			t.Fatalf("check: %x, %v", got, err)
		}
		for i := range raw {
			bad := bytes.Clone(raw)
			bad[i] ^= 0x01
			if _, err := seal.Check(bad); err == nil {
				t.Fatalf("chain %q: byte %d (%q) flipped and the hash still checks", chain, i, raw[i])
			}
		}
	}
	if _, _, _, err := seal.Seal("", 0, seal.ZeroHash, record(1)); err == nil {
		t.Fatal("seq 0 sealed")
	}
}

func TestCheckpointSignatures(t *testing.T) {
	ctx := context.Background()
	signer, foreign := newSigner(t), newSigner(t)
	c, err := seal.Sign(ctx, signer, seal.Checkpoint{Seq: 4, Head: seal.Hex(seal.ZeroHash), Time: time.Now()})
	if err != nil || !c.VerifySig(signer.Public()) {
		t.Fatalf("sign: %+v, %v", c, err)
	}
	if c.VerifySig(foreign.Public()) {
		t.Fatal("verified with a foreign key")
	}
	for name, change := range map[string]func(*seal.Checkpoint){
		"seq":      func(c *seal.Checkpoint) { c.Seq++ },
		"head":     func(c *seal.Checkpoint) { c.Head = strings.Repeat("1", 64) },
		"time":     func(c *seal.Checkpoint) { c.Time = c.Time.Add(time.Nanosecond) },
		"boundary": func(c *seal.Checkpoint) { c.Boundary = true },
		"chain":    func(c *seal.Checkpoint) { c.Chain = "other" },
		"sig":      func(c *seal.Checkpoint) { c.Sig = "AAAA" + c.Sig[4:] },
	} {
		bad := c
		change(&bad)
		if bad.VerifySig(signer.Public()) {
			t.Errorf("%s changed and the signature still verifies", name)
		}
	}
	if _, err := seal.Sign(ctx, seal.Ed25519Signer(nil), c); err == nil {
		t.Fatal("signed with no key")
	}
}

func newSigner(t *testing.T) seal.Ed25519Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return seal.Ed25519Signer(k)
}
