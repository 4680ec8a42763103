package vaultdev

import (
	"net/http"
	"testing"
)

func TestStartServesAnUnsealedVault(t *testing.T) {
	s := Start(t)
	req, _ := http.NewRequest(http.MethodGet, s.Addr+"/v1/auth/token/lookup-self", nil)
	req.Header.Set("X-Vault-Token", s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("lookup-self with the root token: %s", resp.Status)
	}
}
