package seal

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Checkpoint is a signed statement: the chain had this head at this seq.
// Kept with the records, it makes a rewrite of the chain up to it
// detectable by anyone holding the public key; exported out of reach, it
// makes a truncation detectable too. A boundary checkpoint marks where
// retention purged the records up to and including Seq: verification
// starts after it.
type Checkpoint struct {
	Chain    string    `json:"chain,omitempty"`
	Seq      uint64    `json:"seq"`
	Head     string    `json:"head"`
	Time     time.Time `json:"time"`
	Boundary bool      `json:"boundary,omitempty"`
	Sig      string    `json:"sig,omitempty"`
}

// Message is the signed bytes. For chain "" it is the message boltlog
// always signed, so old checkpoints keep verifying; a chain id is quoted
// on a line of its own (a line a sequence number can never be).
func (c Checkpoint) Message() []byte {
	chain := ""
	if c.Chain != "" {
		chain = "chain " + strconv.Quote(c.Chain) + "\n"
	}
	return []byte("relais-audit-checkpoint\n" + chain + strconv.FormatUint(c.Seq, 10) + "\n" + c.Head + "\n" +
		c.Time.UTC().Format(time.RFC3339Nano) + "\n" + strconv.FormatBool(c.Boundary))
}

// VerifySig reports whether Sig is pub's signature of the checkpoint.
func (c Checkpoint) VerifySig(pub ed25519.PublicKey) bool {
	sig, err := base64.StdEncoding.DecodeString(c.Sig)
	return err == nil && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, c.Message(), sig)
}

// Signer signs checkpoints: an Ed25519 key file today, a remote key
// (Vault transit) later, so the broker need not hold the key.
type Signer interface {
	// Sign returns the Ed25519 signature of msg.
	Sign(ctx context.Context, msg []byte) ([]byte, error)
	// Public is the key verification uses.
	Public() ed25519.PublicKey
}

// Ed25519Signer signs with a private key held in memory (the key file).
type Ed25519Signer ed25519.PrivateKey

// Sign implements Signer.
func (k Ed25519Signer) Sign(_ context.Context, msg []byte) ([]byte, error) {
	if len(k) != ed25519.PrivateKeySize {
		return nil, errors.New("seal: not an Ed25519 private key")
	}
	return ed25519.Sign(ed25519.PrivateKey(k), msg), nil
}

// Public implements Signer.
func (k Ed25519Signer) Public() ed25519.PublicKey {
	if len(k) != ed25519.PrivateKeySize {
		return nil
	}
	return ed25519.PrivateKey(k).Public().(ed25519.PublicKey)
}

// Sign returns c signed by s; the time is normalised to UTC, as stored.
func Sign(ctx context.Context, s Signer, c Checkpoint) (Checkpoint, error) {
	c.Time = c.Time.UTC()
	sig, err := s.Sign(ctx, c.Message())
	if err != nil {
		return Checkpoint{}, fmt.Errorf("seal: sign checkpoint %d: %w", c.Seq, err)
	}
	if len(sig) != ed25519.SignatureSize {
		return Checkpoint{}, fmt.Errorf("seal: sign checkpoint %d: the signer returned %d bytes, not an Ed25519 signature", c.Seq, len(sig))
	}
	c.Sig = base64.StdEncoding.EncodeToString(sig)
	return c, nil
}
