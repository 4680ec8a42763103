package main

import (
	"bytes"
	"os"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestExampleConfigurationIsCurrent decodes deploy/relaisd.example.yaml
// strictly: every documented key exists, and every option is documented.
func TestExampleConfigurationIsCurrent(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/relaisd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("the example holds a key relaisd does not know: %v", err)
	}
	if c.TLS.Vault == nil || c.TLS.Vault.RoleID == "" || c.Audit.Retention == 0 || c.Listen.Ops == "" || c.SourcesFile == "" || c.Log.Format == "" || c.TLS.CRLRefresh == 0 {
		t.Fatalf("the example leaves options out: %+v", c)
	}
}
