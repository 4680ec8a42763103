package seal_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/relais-broker/relais/broker/audit/seal"
)

// TestVerifierTakesEarlierKeys: a chain whose checkpoints were signed by
// two successive keys verifies when the earlier key is given, and fails
// without it; a key nobody gave still fails.
func TestVerifierTakesEarlierKeys(t *testing.T) {
	newKey := func() seal.Ed25519Signer {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return seal.Ed25519Signer(priv)
	}
	old, cur, stranger := newKey(), newKey(), newKey()
	// Records 1 to 20; the checkpoints up to seq 10 signed before the
	// rotation (old key), the later ones after it (current key).
	var mixed []seal.Entry
	for _, e := range build(t, cur, "", 1, 20, 5, seal.ZeroHash) {
		if c := e.Checkpoint; c != nil && c.Seq <= 10 {
			unsigned := *c
			unsigned.Sig = ""
			resigned, err := seal.Sign(context.Background(), old, unsigned)
			if err != nil {
				t.Fatal(err)
			}
			e = seal.CheckpointEntry(resigned)
		}
		mixed = append(mixed, e)
	}
	run := func(pub ed25519.PublicKey, earlier ...ed25519.PublicKey) *seal.Report {
		v := seal.NewVerifier(pub, earlier...)
		for _, e := range mixed {
			if !v.Add(e) {
				break
			}
		}
		return v.Report()
	}
	if rep := run(cur.Public(), old.Public()); !rep.OK() || rep.Records != 20 || rep.Checkpoints != 4 {
		t.Fatalf("with the earlier key: %+v", rep)
	}
	if rep := run(cur.Public()); rep.OK() {
		t.Fatal("verified without the earlier key")
	}
	if rep := run(cur.Public(), stranger.Public()); rep.OK() {
		t.Fatal("verified with a stranger's key")
	}
}
