package netcut

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCutAndRestore(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up") }))
	defer srv.Close()
	p, err := New(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	get := func() error {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + p.Addr())
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	if err := get(); err != nil {
		t.Fatalf("before the cut: %v", err)
	}
	p.Cut()
	if err := get(); err == nil {
		t.Fatal("a request went through the cut")
	}
	p.Restore()
	if err := get(); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}
