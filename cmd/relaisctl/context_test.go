package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestContextResolutionOrder: flag > environment > context of the file >
// default, for each setting, and context use/list/show.
func TestContextResolutionOrder(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "relais", "config.yaml")
	t.Setenv(envConfig, cfg)
	for _, v := range []string{envAdminAddr, envOperatorDir, envServerName, envBrokerAddr, envContext} {
		t.Setenv(v, "")
	}
	show := func(args ...string) connSettings {
		t.Helper()
		code, out, errOut := relaisctl(t, append([]string{"context", "show", "-o", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("context show: %d %s", code, errOut)
		}
		var s connSettings
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := show(); s.AdminAddr != (setting{defaultAdminAddr, "default"}) || s.Context != "" {
		t.Fatalf("no file: %+v", s)
	}
	if code, _, errOut := relaisctl(t, "context", "set", "prod", "--admin-addr", "prod.example:4444", "--operator-dir", "/srv/op", "--server-name", "prod.example"); code != 0 {
		t.Fatalf("context set: %s", errOut)
	}
	if code, _, errOut := relaisctl(t, "context", "set", "staging", "--admin-addr", "staging.example:4444"); code != 0 {
		t.Fatalf("context set: %s", errOut)
	}
	if st, err := os.Stat(cfg); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", st, err)
	}
	// The first context set became current.
	if s := show(); s.Context != "prod" || s.AdminAddr != (setting{"prod.example:4444", "context prod"}) || s.OperatorDir.Value != "/srv/op" || s.BrokerAddr.Source != "default" {
		t.Fatalf("file: %+v", s)
	}
	t.Setenv(envAdminAddr, "env.example:4444")
	if s := show(); s.AdminAddr != (setting{"env.example:4444", "env $" + envAdminAddr}) || s.ServerName.Value != "prod.example" {
		t.Fatalf("env over file: %+v", s)
	}
	// A flag beats both: resolveConn sees the command's flag set.
	b := newRoot()
	cmd, _, err := b.Find([]string{"consumers", "list"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags([]string{"--admin-addr", "flag.example:4444"}); err != nil {
		t.Fatal(err)
	}
	s, err := resolveConn(cmd.Flags(), "")
	if err != nil || s.AdminAddr != (setting{"flag.example:4444", "flag --admin-addr"}) || s.OperatorDir.Value != "/srv/op" {
		t.Fatalf("flag over env: %+v %v", s, err)
	}
	// --context and $RELAIS_CONTEXT pick another context.
	t.Setenv(envAdminAddr, "")
	if s := show("staging"); s.AdminAddr.Value != "staging.example:4444" || s.OperatorDir.Source != "default" {
		t.Fatalf("show staging: %+v", s)
	}
	t.Setenv(envContext, "staging")
	if s := show(); s.Context != "staging" {
		t.Fatalf("$RELAIS_CONTEXT: %+v", s)
	}
	t.Setenv(envContext, "")
	if code, out, _ := relaisctl(t, "context", "use", "staging"); code != 0 || !strings.Contains(out, "staging") {
		t.Fatalf("context use: %d %s", code, out)
	}
	if s := show(); s.Context != "staging" {
		t.Fatalf("after use: %+v", s)
	}
	if code, out, _ := relaisctl(t, "context", "list"); code != 0 || !regexp.MustCompile(`\*\s+staging`).MatchString(out) || !strings.Contains(out, "prod.example:4444") {
		t.Fatalf("context list:\n%s", out)
	}
	if code, _, errOut := relaisctl(t, "context", "use", "nope"); code != 1 || !strings.Contains(errOut, `no context "nope"`) {
		t.Fatalf("use of an unknown context: %d %s", code, errOut)
	}
	// A command reaching the broker says where a wrong setting came from.
	t.Setenv(envOperatorDir, filepath.Join(t.TempDir(), "missing"))
	if code, _, errOut := relaisctl(t, "consumers", "list"); code != 1 || !strings.Contains(errOut, "env $"+envOperatorDir) {
		t.Fatalf("consumers list with a wrong operator dir: %d %s", code, errOut)
	}
	// A bad file names the key and the line.
	_ = os.WriteFile(cfg, []byte("current-context: prod\ncontexts:\n  - name: prod\n    adress: x\n"), 0o600)
	if code, _, errOut := relaisctl(t, "context", "list"); code != 1 || !strings.Contains(errOut, `line 4: unknown key "adress" in contexts[0]`) {
		t.Fatalf("bad config: %d %s", code, errOut)
	}
}
