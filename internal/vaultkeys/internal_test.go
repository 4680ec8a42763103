package vaultkeys

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func TestParseSignature(t *testing.T) {
	sig := bytes.Repeat([]byte{0xab}, 64)
	good := "vault:v3:" + base64.StdEncoding.EncodeToString(sig)
	v, got, err := parseSignature(good)
	if err != nil || v != 3 || !bytes.Equal(got, sig) {
		t.Fatalf("parse %q: %d, %x, %v", good, v, got, err)
	}
	for _, tc := range []struct{ in, says string }{
		{"", "vault:vN: form"},
		{"v3:" + base64.StdEncoding.EncodeToString(sig), "vault:vN: form"},
		{"vault:v3", "vault:vN: form"},
		{"vault:vx:" + base64.StdEncoding.EncodeToString(sig), "not a positive number"},
		{"vault:v0:" + base64.StdEncoding.EncodeToString(sig), "not a positive number"},
		{"vault:v1:!!!", "not base64"},
		{"vault:v1:" + base64.StdEncoding.EncodeToString(sig[:63]), "63 bytes"},
	} {
		if _, _, err := parseSignature(tc.in); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("parse %q: %v, want an error saying %q", tc.in, err, tc.says)
		}
	}
}

func TestPolicyNamesExactlyThePaths(t *testing.T) {
	got := Policy("/relais-kv/", "relaisd/pseudonym", "relais-transit", "audit")
	for _, want := range []string{
		`path "relais-kv/data/relaisd/pseudonym" {` + "\n  capabilities = [\"read\"]",
		`path "relais-transit/keys/audit" {` + "\n  capabilities = [\"read\"]",
		`path "relais-transit/sign/audit" {` + "\n  capabilities = [\"update\"]",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("policy lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "*") || strings.Count(got, "path ") != 3 {
		t.Errorf("policy grants more than three exact paths:\n%s", got)
	}
}
