package haproxytest

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestCheckBackendsRefusesBadInput(t *testing.T) {
	ok := Backend{Name: "r1", Addr: "127.0.0.1:1", HealthAddr: "127.0.0.1:2"}
	for name, tc := range map[string]struct {
		backends []Backend
		want     string
	}{
		"none":      {nil, "no backends"},
		"twice":     {[]Backend{ok, ok}, "used twice"},
		"space":     {[]Backend{{Name: "r 1", Addr: ok.Addr, HealthAddr: ok.HealthAddr}}, "not a plain word"},
		"slash":     {[]Backend{{Name: "a/b", Addr: ok.Addr, HealthAddr: ok.HealthAddr}}, "not a plain word"},
		"no port":   {[]Backend{{Name: "r1", Addr: "127.0.0.1", HealthAddr: ok.HealthAddr}}, "address"},
		"no health": {[]Backend{{Name: "r1", Addr: ok.Addr}}, "address"},
	} {
		t.Run(name, func(t *testing.T) {
			err := checkBackends(tc.backends)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("checkBackends: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := checkBackends([]Backend{ok}); err != nil {
		t.Fatalf("a good backend refused: %v", err)
	}
}

func TestConfigHasTheHealthCheckAndOptions(t *testing.T) {
	p := &Proxy{
		addr: "127.0.0.1:9", cfgPath: t.TempDir() + "/haproxy.cfg", sock: "/tmp/x.sock",
		opts:     Options{Balance: "leastconn", ShutdownSessions: true, Inter: 300 * time.Millisecond}.withDefaults(),
		backends: []Backend{{Name: "r1", Addr: "127.0.0.1:7000", HealthAddr: "127.0.0.2:7001"}},
	}
	if err := p.writeConfig(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	for _, want := range []string{
		"mode tcp",
		"balance leastconn",
		"option redispatch 1",
		"http-check send meth GET uri /readyz",
		"http-check expect status 200",
		"default-server inter 300ms fall 2 rise 2 on-marked-down shutdown-sessions",
		"server r1 127.0.0.1:7000 check addr 127.0.0.2 port 7001",
		"bind 127.0.0.1:9",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
}
