package vaultkeys_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/internal/netcut"
	"github.com/relais-broker/relais/internal/vaultdev"
	"github.com/relais-broker/relais/internal/vaultkeys"
)

const (
	kvMount      = "relais-kv"
	kvPath       = "relaisd/pseudonym"
	transitMount = "relais-transit"
	keyName      = "audit-checkpoints"
)

// vault is one dev Vault with a KV v2 and a transit mount, shared by the
// subtests of one test (a dev Vault takes a second or two to start).
type vault struct {
	srv  *vaultdev.Server
	root *api.Client
}

func startVault(t *testing.T) *vault {
	t.Helper()
	srv := vaultdev.Start(t)
	v := &vault{srv: srv, root: client(t, srv.Addr, srv.Token)}
	ctx := context.Background()
	if err := v.root.Sys().MountWithContext(ctx, kvMount, &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	if err := v.root.Sys().MountWithContext(ctx, transitMount, &api.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	// A new KV v2 mount answers "upgrading" for a moment: wait until a
	// read gets a real answer.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.root.KVv2(kvMount).Get(ctx, "probe")
		if errors.Is(err, api.ErrSecretNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kv v2 mount not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return v
}

func client(t *testing.T, addr, token string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.Timeout = 5 * time.Second
	// No retries: the down test wants the first failure, not three.
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

func TestPseudonymKeyCreateReadNeverReplace(t *testing.T) {
	v := startVault(t)
	ctx := context.Background()
	if _, err := vaultkeys.PseudonymKey(ctx, v.root, kvMount, kvPath); !errors.Is(err, vaultkeys.ErrNotFound) {
		t.Fatalf("before create: %v, want ErrNotFound", err)
	}
	if err := vaultkeys.PutPseudonymKey(ctx, v.root, kvMount, kvPath, make([]byte, 16)); !errors.Is(err, vaultkeys.ErrTooShort) {
		t.Fatalf("put a 16-byte key: %v, want ErrTooShort", err)
	}
	if _, err := vaultkeys.PseudonymKey(ctx, v.root, kvMount, kvPath); !errors.Is(err, vaultkeys.ErrNotFound) {
		t.Fatalf("a refused put wrote something: %v", err)
	}
	if err := vaultkeys.CreatePseudonymKey(ctx, v.root, kvMount, kvPath); err != nil {
		t.Fatal(err)
	}
	first, err := vaultkeys.PseudonymKey(ctx, v.root, kvMount, kvPath)
	if err != nil || len(first) != vaultkeys.MinPseudonymKeyBytes {
		t.Fatalf("read back: %d bytes, %v", len(first), err)
	}
	// A second replica reads the same bytes.
	again, err := vaultkeys.PseudonymKey(ctx, client(t, v.srv.Addr, v.srv.Token), kvMount, kvPath)
	if err != nil || !bytes.Equal(first, again) {
		t.Fatalf("second reader got a different key (%v)", err)
	}
	other := bytes.Repeat([]byte{7}, 40)
	for name, create := range map[string]func() error{
		"create": func() error { return vaultkeys.CreatePseudonymKey(ctx, v.root, kvMount, kvPath) },
		"put":    func() error { return vaultkeys.PutPseudonymKey(ctx, v.root, kvMount, kvPath, other) },
	} {
		if err := create(); !errors.Is(err, vaultkeys.ErrExists) {
			t.Fatalf("%s over an existing key: %v, want ErrExists", name, err)
		}
	}
	if now, err := vaultkeys.PseudonymKey(ctx, v.root, kvMount, kvPath); err != nil || !bytes.Equal(now, first) {
		t.Fatalf("the key changed after refused writes (%v)", err)
	}
}

func TestPseudonymKeyPreciseErrorsWithoutKeyBytes(t *testing.T) {
	v := startVault(t)
	ctx := context.Background()
	kv := v.root.KVv2(kvMount)
	const secretish = "0badc0ffee0badc0ffee0badc0ffee0b"
	put := func(t *testing.T, path string, data map[string]any) {
		t.Helper()
		if _, err := kv.Put(ctx, path, data); err != nil {
			t.Fatal(err)
		}
	}
	put(t, "no-field", map[string]any{"other": secretish + secretish})
	put(t, "number", map[string]any{"key": 12345})
	put(t, "not-hex", map[string]any{"key": secretish + "zz" + secretish})
	put(t, "short", map[string]any{"key": secretish})
	put(t, "deleted", map[string]any{"key": secretish + secretish})
	if err := kv.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, mount, path string
		want              error
		says              string
	}{
		{"missing", kvMount, "absent", vaultkeys.ErrNotFound, "relais-kv/absent"},
		{"wrong mount", "no-such-mount", kvPath, vaultkeys.ErrNotFound, "no-such-mount"},
		{"deleted", kvMount, "deleted", vaultkeys.ErrNotFound, "deleted"},
		{"no field", kvMount, "no-field", vaultkeys.ErrMalformed, `no "key" field`},
		{"number", kvMount, "number", vaultkeys.ErrMalformed, "want a hex string"},
		{"not hex", kvMount, "not-hex", vaultkeys.ErrMalformed, "is not hex"},
		{"short", kvMount, "short", vaultkeys.ErrTooShort, "holds 16 bytes, want at least 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := vaultkeys.PseudonymKey(ctx, v.root, tc.mount, tc.path)
			if !errors.Is(err, tc.want) || key != nil {
				t.Fatalf("got %d bytes, %v; want %v", len(key), err, tc.want)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			if strings.Contains(err.Error(), secretish) || strings.Contains(err.Error(), v.srv.Token) {
				t.Errorf("error quotes the secret: %q", err)
			}
		})
	}
}

func TestTransitSignerSignsForPlainEd25519Verify(t *testing.T) {
	v := startVault(t)
	ctx := context.Background()
	if err := vaultkeys.CreateTransitKey(ctx, v.root, transitMount, keyName); err != nil {
		t.Fatal(err)
	}
	if err := vaultkeys.CreateTransitKey(ctx, v.root, transitMount, keyName); !errors.Is(err, vaultkeys.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	signer, err := vaultkeys.NewTransitSigner(ctx, v.root, transitMount, keyName)
	if err != nil {
		t.Fatal(err)
	}
	if signer.Version() != 1 || len(signer.Public()) != ed25519.PublicKeySize {
		t.Fatalf("version %d, public key %d bytes", signer.Version(), len(signer.Public()))
	}
	msg := []byte("relais checkpoint 42 head 9f86d081")
	sig, err := signer.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	// The public key alone, published once, checks the signature.
	pubs, err := vaultkeys.TransitPublicKeys(ctx, v.root, transitMount, keyName)
	if err != nil || len(pubs) != 1 || !bytes.Equal(pubs[1], signer.Public()) {
		t.Fatalf("public keys %v, %v", pubs, err)
	}
	if !ed25519.Verify(pubs[1], msg, sig) {
		t.Fatal("the transit signature does not verify with ed25519.Verify")
	}
	if ed25519.Verify(pubs[1], []byte("relais checkpoint 43 head 9f86d081"), sig) {
		t.Fatal("the signature verifies another message")
	}
	// And through seal, as auditlog uses it.
	c, err := seal.Sign(ctx, signer, seal.Checkpoint{Chain: "r1", Seq: 7, Head: seal.Hex(seal.ZeroHash), Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if !c.VerifySig(pubs[1]) {
		t.Fatal("seal checkpoint signed by transit does not verify")
	}
}

func TestTransitRotationKeepsOldSignaturesVerifiable(t *testing.T) {
	v := startVault(t)
	ctx := context.Background()
	if err := vaultkeys.CreateTransitKey(ctx, v.root, transitMount, keyName); err != nil {
		t.Fatal(err)
	}
	before, err := vaultkeys.NewTransitSigner(ctx, v.root, transitMount, keyName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.root.Logical().WriteWithContext(ctx, transitMount+"/keys/"+keyName+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	after, err := vaultkeys.NewTransitSigner(ctx, v.root, transitMount, keyName)
	if err != nil {
		t.Fatal(err)
	}
	if before.Version() != 1 || after.Version() != 2 || bytes.Equal(before.Public(), after.Public()) {
		t.Fatalf("versions %d and %d", before.Version(), after.Version())
	}
	msg := []byte("checkpoint")
	// A replica started before the rotation still signs with version 1.
	old, err := before.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := after.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := vaultkeys.TransitPublicKeys(ctx, v.root, transitMount, keyName)
	if err != nil || len(pubs) != 2 {
		t.Fatalf("public keys %d, %v", len(pubs), err)
	}
	if !ed25519.Verify(pubs[1], msg, old) || ed25519.Verify(pubs[2], msg, old) {
		t.Fatal("a version 1 signature must verify with version 1's key only")
	}
	if !ed25519.Verify(pubs[2], msg, fresh) || ed25519.Verify(pubs[1], msg, fresh) {
		t.Fatal("a version 2 signature must verify with version 2's key only")
	}
}

func TestTransitSignerRefusesWrongKeys(t *testing.T) {
	v := startVault(t)
	ctx := context.Background()
	if _, err := v.root.Logical().WriteWithContext(ctx, transitMount+"/keys/rsa", map[string]any{"type": "rsa-2048"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.root.Logical().WriteWithContext(ctx, transitMount+"/keys/derived", map[string]any{"type": "ed25519", "derived": true}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, mount, key string
		want             error
	}{
		{"missing key", transitMount, "absent", vaultkeys.ErrNotFound},
		{"wrong mount", "no-such-transit", keyName, vaultkeys.ErrNotFound},
		{"rsa key", transitMount, "rsa", vaultkeys.ErrMalformed},
		{"derived key", transitMount, "derived", vaultkeys.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := vaultkeys.NewTransitSigner(ctx, v.root, tc.mount, tc.key)
			if !errors.Is(err, tc.want) || s != nil {
				t.Fatalf("got %v, %v; want %v", s, err, tc.want)
			}
			t.Log(err)
		})
	}
	for _, bad := range []string{"", "a/b", "..", "x?y"} {
		if _, err := vaultkeys.NewTransitSigner(ctx, v.root, transitMount, bad); err == nil || !strings.Contains(err.Error(), "single path segment") {
			t.Errorf("key name %q: %v", bad, err)
		}
		if err := vaultkeys.CreateTransitKey(ctx, v.root, transitMount, bad); err == nil {
			t.Errorf("created key name %q", bad)
		}
	}
}

func TestVaultDownIsErrUnavailableAndRecovers(t *testing.T) {
	v := startVault(t)
	ctx := context.Background()
	if err := vaultkeys.CreatePseudonymKey(ctx, v.root, kvMount, kvPath); err != nil {
		t.Fatal(err)
	}
	if err := vaultkeys.CreateTransitKey(ctx, v.root, transitMount, keyName); err != nil {
		t.Fatal(err)
	}
	cut, err := netcut.New(strings.TrimPrefix(v.srv.Addr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cut.Close() })
	c := client(t, "http://"+cut.Addr(), v.srv.Token)
	signer, err := vaultkeys.NewTransitSigner(ctx, c, transitMount, keyName)
	if err != nil {
		t.Fatal(err)
	}

	cut.Cut()
	if _, err := signer.Sign(ctx, []byte("m")); !errors.Is(err, vaultkeys.ErrUnavailable) {
		t.Fatalf("sign with vault down: %v, want ErrUnavailable", err)
	} else {
		t.Log(err)
	}
	if _, err := vaultkeys.PseudonymKey(ctx, c, kvMount, kvPath); !errors.Is(err, vaultkeys.ErrUnavailable) {
		t.Fatalf("read key with vault down: %v, want ErrUnavailable", err)
	}
	if _, err := vaultkeys.NewTransitSigner(ctx, c, transitMount, keyName); !errors.Is(err, vaultkeys.ErrUnavailable) {
		t.Fatalf("new signer with vault down: %v, want ErrUnavailable", err)
	}
	short, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-short.Done()
	if _, err := signer.Sign(short, []byte("m")); !errors.Is(err, vaultkeys.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sign past its deadline: %v, want ErrUnavailable and DeadlineExceeded", err)
	}

	cut.Restore()
	sig, err := signer.Sign(ctx, []byte("m"))
	if err != nil || !ed25519.Verify(signer.Public(), []byte("m"), sig) {
		t.Fatalf("sign after vault came back: %v", err)
	}
}

func TestPolicyIsEnoughAndNoMore(t *testing.T) {
	v := startVault(t)
	ctx := context.Background()
	if err := vaultkeys.CreatePseudonymKey(ctx, v.root, kvMount, kvPath); err != nil {
		t.Fatal(err)
	}
	if err := vaultkeys.CreateTransitKey(ctx, v.root, transitMount, keyName); err != nil {
		t.Fatal(err)
	}
	if err := v.root.Sys().PutPolicyWithContext(ctx, "relaisd", vaultkeys.Policy(kvMount, kvPath, transitMount, keyName)); err != nil {
		t.Fatal(err)
	}
	tok, err := v.root.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{Policies: []string{"relaisd"}, NoDefaultPolicy: true, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	replica := client(t, v.srv.Addr, tok.Auth.ClientToken)

	key, err := vaultkeys.PseudonymKey(ctx, replica, kvMount, kvPath)
	if err != nil || len(key) != 32 {
		t.Fatalf("replica reads the pseudonym key: %d bytes, %v", len(key), err)
	}
	signer, err := vaultkeys.NewTransitSigner(ctx, replica, transitMount, keyName)
	if err != nil {
		t.Fatal(err)
	}
	if sig, err := signer.Sign(ctx, []byte("m")); err != nil || !ed25519.Verify(signer.Public(), []byte("m"), sig) {
		t.Fatalf("replica signs: %v", err)
	}
	if err := vaultkeys.PutPseudonymKey(ctx, replica, kvMount, "relaisd/other", bytes.Repeat([]byte{1}, 32)); !errors.Is(err, vaultkeys.ErrDenied) {
		t.Fatalf("replica writes a kv secret: %v, want ErrDenied", err)
	}
	if _, err := vaultkeys.PseudonymKey(ctx, replica, kvMount, "relaisd/other"); !errors.Is(err, vaultkeys.ErrDenied) {
		t.Fatalf("replica reads another kv secret: %v, want ErrDenied", err)
	}
	if err := vaultkeys.CreateTransitKey(ctx, replica, transitMount, "another"); !errors.Is(err, vaultkeys.ErrDenied) {
		t.Fatalf("replica creates a transit key: %v, want ErrDenied", err)
	}
	if _, err := replica.Logical().WriteWithContext(ctx, transitMount+"/keys/"+keyName+"/rotate", nil); err == nil {
		t.Fatal("replica rotated the signing key")
	}
}
