package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApplyFileErrorsNameKeyAndLine: the operator reads YAML keys and
// lines, never Go type names.
func TestApplyFileErrorsNameKeyAndLine(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"consumers:\n  - siret: \"21750000500012\"\n    nom: typo\n", `line 3: unknown key "nom" in consumers[0] (known keys: siret, name, status, contacts, grants)`},
		{"consumers:\n  - siret: \"21750000500012\"\n    grants:\n      - service: s\n        quota: {rate_per_second: vite}\n", `line 5: consumers[0].grants[0].quota.rate_per_second: want a number, not "vite"`},
		{"consumers:\n  - siret: \"21750000500012\"\n    grants:\n      - quota: {burst: 2.5}\n", `line 4: consumers[0].grants[0].quota.burst: want a whole number, not "2.5"`},
		{"consumers:\n  siret: x\n", "line 2: consumers: want a list"},
		{"consumers:\n  - siret: \"21750000500012\"\n    grants:\n      - scopes: a\n", "line 4: consumers[0].grants[0].scopes: want a list"},
		{"consumers:\n  - siret: \"21750000500012\"\n    status: paused\n", `consumers[0].status "paused": want active or suspended`},
	} {
		path := filepath.Join(t.TempDir(), "grants.yaml")
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := readApplyFile(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "main.") {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestWrongKeyTypesGetPlainMessages: verify given a private key, a
// certificate, an RSA key or nothing PEM says so in words.
func TestWrongKeyTypesGetPlainMessages(t *testing.T) {
	f := newAuditFixture(t, false)
	dir := t.TempDir()
	raw, _ := os.ReadFile(filepath.Join(f.dir, "audit.key"))
	priv := filepath.Join(dir, "priv.pem")
	_ = os.WriteFile(priv, raw, 0o600)
	rsaPub := filepath.Join(dir, "rsa.pub")
	// A 2048-bit RSA public key in PKIX PEM.
	_ = os.WriteFile(rsaPub, []byte(rsaPublicPEM), 0o644)
	junk := filepath.Join(dir, "junk")
	_ = os.WriteFile(junk, []byte("not a key\n"), 0o644)
	for _, tc := range []struct{ file, want string }{
		{priv, "a private key: give the public key"},
		{rsaPub, "an RSA public key, not the Ed25519 key"},
		{junk, "holds no PEM key"},
	} {
		code, _, errOut := ctl(t, "audit", "verify", "--db", f.db, "--public-key", tc.file)
		if code != 1 || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "asn1") {
			t.Errorf("%s: %d %q", tc.file, code, errOut)
		}
	}
}

const rsaPublicPEM = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo
4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u
+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh
kd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ
0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdg
cKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbc
mwIDAQAB
-----END PUBLIC KEY-----
`
