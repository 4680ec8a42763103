package portal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/devidp"
)

// chromiumPath is Debian's Chromium (apt-get install chromium); the
// RELAIS_CHROMIUM variable points elsewhere.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("RELAIS_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("RELAIS_REQUIRE_CHROMIUM") == "1" {
			t.Fatalf("RELAIS_REQUIRE_CHROMIUM=1 but no Chromium at %s (apt-get install chromium): %v", path, err)
		}
		t.Skipf("no Chromium at %s (apt-get install chromium, or set RELAIS_CHROMIUM); RELAIS_REQUIRE_CHROMIUM=1 makes this a failure", path)
	}
	return path
}

// TestBrowser drives Debian's headless Chromium through the portal and the
// real dev provider over TLS on 127.0.0.1, with the accesses written
// through a real audit log file and read with a real registry file.
func TestBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	ctx := context.Background()
	dir := t.TempDir()

	log, err := boltlog.Open(filepath.Join(dir, "audit.db"), boltlog.Options{SigningKey: []byte(audittest.NewSigner(t)), Clock: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	env := prepareDemo(t, filepath.Join(dir, "relais-dev"))

	// Months of history, traced as the broker traces (the broker cannot
	// be made to call in the past).
	pz, pc := brokerPseudonym(t, zoe), brokerPseudonym(t, camille)
	var recs []audit.Record
	add := func(r audit.Record, mod func(*audit.Record)) {
		if mod != nil {
			mod(&r)
		}
		recs = append(recs, r)
	}
	add(accessRecord(pz, "zoe-cantine-jul", sirTown, "cantine", t0.AddDate(0, -4, -3)), nil)
	add(accessRecord(pz, "zoe-cantine-aug", sirTown, "cantine", t0.AddDate(0, -3, 2)), nil)
	add(accessRecord(pz, "zoe-ccas-sep", sirCCAS, "aide_sociale", t0.AddDate(0, -2, 0)), nil)
	add(accessRecord(pz, "zoe-ccas-oct", sirCCAS, "aide_sociale", t0.AddDate(0, -1, 1)), func(r *audit.Record) {
		r.Code, r.Reason, r.FieldsReturned = "NotFound", "subject_not_found", nil
	})
	add(accessRecord(pz, "zoe-cantine-nov", sirTown, "cantine", t0), func(r *audit.Record) {
		r.Code, r.Reason, r.FieldsReturned = "PermissionDenied", "scope_not_granted", nil
	})
	add(accessRecord(pc, "camille-cantine", sirTown, "cantine", t0.AddDate(0, 0, -5)), nil)
	for _, r := range recs {
		if err := log.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	disclose := &clock{t: time.Now()}
	s := newStack(t, stackOptions{audit: log, registry: env.Registry, discloseNow: disclose.Now})

	// Today's accesses, made through the demo consumers of relaisd dev: by
	// typed identity, by the citizen's own login, and one under a grant
	// that defers disclosure.
	b := startDemoBroker(t, env, log, s.idp)
	town, ccas := b.dial(t, devenv.FullConsumer), b.dial(t, devenv.LimitedConsumer)
	idTyped := familyQuotient(t, town, devenv.FullConsumer.SIRET, "tarification_sociale", identityOf(t, zoe), "")
	idCCAS := familyQuotient(t, ccas, devenv.LimitedConsumer.SIRET, "aide_sociale_facultative", identityOf(t, zoe), "")
	idLogin := familyQuotient(t, town, devenv.FullConsumer.SIRET, "tarification_sociale", nil, s.idp.Token(t, devidp.ClientCitizenPortal, zoe))
	idFraud := familyQuotient(t, town, devenv.FullConsumer.SIRET, fraudPurpose, identityOf(t, zoe), "")
	idCamille := familyQuotient(t, town, devenv.FullConsumer.SIRET, "tarification_sociale", identityOf(t, camille), "")

	// Portal and provider both serve the test certificate for 127.0.0.1;
	// Chromium trusts exactly that key, nothing else.
	if !bytes.Equal(s.srv.Certificate().Raw, s.idp.TLS.Certificate().Raw) {
		t.Fatal("portal and provider serve different certificates")
	}
	spki := sha256.Sum256(s.srv.Certificate().RawSubjectPublicKeyInfo)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(filepath.Join(dir, "chromium")),
		chromedp.WindowSize(1280, 1000),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		chromedp.Flag("lang", "fr-FR"),
		chromedp.Env("LANGUAGE=fr", "LANG=fr_FR.UTF-8"),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil { // starts the browser without a deadline
		t.Fatalf("start chromium: %v", err)
	}
	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			where, _ := chromedp.Run(bctx, chromedp.Location())
			page, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 400) : ""`))
			t.Fatalf("%s: %v (at %s: %q)", name, err, where, page)
		}
	}
	run := func(name string, a chromedp.Action[[]string]) []string {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		v, err := chromedp.Run(sctx, a)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return v
	}
	shoot := func(name string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
			t.Fatalf("screenshot %s is not a PNG", name)
		}
		if os.Getenv("RELAIS_UPDATE_SCREENSHOTS") == "1" {
			if err := os.MkdirAll(filepath.Join("..", "docs", "screenshots"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("..", "docs", "screenshots", "portal-"+name+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	locale := func(l string) chromedp.Action[chromedp.Void] { // the date inputs' display follows it
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: l})
			return err
		})
	}
	rows := chromedp.Evaluate[[]string](`[...document.querySelectorAll('#accesses tbody tr')].map(r => r.dataset.reference)`)
	text := func(sel string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		v, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	location := func() string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	loginAs := func(label string) {
		t.Helper()
		step("login "+label,
			chromedp.Click(chromedp.ID("login")),
			chromedp.WaitVisible(chromedp.CSS(`input[data-label="`+label+`"]`)),
			chromedp.Click(chromedp.CSS(`input[data-label="`+label+`"]`)),
			chromedp.Click(chromedp.CSS(`form button[type=submit]:not([name])`)),
			chromedp.WaitVisible(chromedp.ID("logout")),
		)
		if !strings.HasPrefix(location(), s.base+"/") {
			t.Fatalf("after login at %s", location())
		}
	}

	// Home, then the real login page of the provider.
	step("home", locale("fr_FR"), chromedp.Navigate(s.base+"/?lang=fr"), chromedp.WaitVisible(chromedp.ID("login")))
	shoot("home")
	loginAs(zoe)

	// Exactly Zoé's disclosed accesses, newest first; the deferred one hidden.
	want := []string{idLogin, idCCAS, idTyped, "zoe-cantine-nov", "zoe-ccas-oct", "zoe-ccas-sep", "zoe-cantine-aug", "zoe-cantine-jul"}
	if got := run("rows", rows); !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	if n := text("#deferred-notice"); !strings.Contains(n, "plus tard") {
		t.Errorf("deferred notice %q", n)
	}
	if c := text(`tr[data-reference="` + idLogin + `"]`); !strings.Contains(c, "À votre initiative") || !strings.Contains(c, devenv.FullConsumer.Name) ||
		!strings.Contains(c, "Tarification sociale des services municipaux") || !strings.Contains(c, "Données transmises") {
		t.Errorf("citizen-initiated row %q", c)
	}
	if c := text(`tr[data-reference="` + idTyped + `"]`); strings.Contains(c, "À votre initiative") {
		t.Errorf("typed-identity row told as citizen-initiated: %q", c)
	}
	if c := text(`tr[data-reference="` + idCCAS + `"]`); !strings.Contains(c, devenv.LimitedConsumer.Name) || !strings.Contains(c, "CASF art. L123-5") {
		t.Errorf("CCAS row %q", c)
	}
	shoot("list")

	// Filter by period and body, with the keyboard-reachable form.
	from := t0.AddDate(0, -3, 0).In(s.portal.loc).Format("2006-01-02")
	to := t0.AddDate(0, 0, -1).In(s.portal.loc).Format("2006-01-02")
	step("filter",
		chromedp.SetValue(chromedp.ID("f-from"), from),
		chromedp.SetValue(chromedp.ID("f-to"), to),
		chromedp.SetValue(chromedp.ID("f-body"), sirTown),
		chromedp.Click(chromedp.ID("apply")),
		chromedp.WaitVisible(chromedp.ID("reset")),
	)
	if got := run("filtered rows", rows); !slices.Equal(got, []string{"zoe-cantine-aug"}) {
		t.Fatalf("filtered rows %v", got)
	}
	shoot("filtered")

	// The CSV export of the filtered rows, downloaded as a person would.
	downloads := filepath.Join(dir, "downloads")
	dctx, cancel := context.WithTimeout(bctx, 20*time.Second)
	progress := chromedp.BrowserEvents(dctx, browser.DownloadProgress)
	if err := chromedp.Do(dctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		enabled := true
		_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads, EventsEnabled: &enabled})
		return err
	}), chromedp.Click(chromedp.ID("export-csv"))); err != nil {
		t.Fatal(err)
	}
	for ev, err := range progress { // wait for the download's own completion event
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatal("download cancelled")
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			break
		}
	}
	cancel()
	files, _ := filepath.Glob(filepath.Join(downloads, "relais-consultations-*.csv"))
	if len(files) != 1 {
		entries, _ := os.ReadDir(downloads)
		t.Fatalf("downloaded %v, want one relais-consultations-<date>.csv (the attachment's name)", entries)
	}
	csvBytes, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	table, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(csvBytes), "\ufeff"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(table) != 2 || table[1][11] != "zoe-cantine-aug" || table[1][1] != "Mairie de Villeurbanne" || table[1][2] != sirTown ||
		table[1][6] != "Tarif de la cantine scolaire" || table[1][9] != "Données transmises" || !strings.Contains(table[1][8], "Enfants du foyer") {
		t.Errorf("csv %q", table)
	}

	// The deferred access appears on its disclosure date, not before.
	fraudRow := `tr[data-reference="` + idFraud + `"]`
	disclose.Set(time.Now().AddDate(0, 0, 90).Add(-time.Hour))
	step("the day before the disclosure date", chromedp.Navigate(s.base+"/"), chromedp.WaitVisible(chromedp.ID("accesses")))
	if got := run("rows before", rows); slices.Contains(got, idFraud) || len(got) != len(want) {
		t.Fatalf("before its date: rows %v", got)
	}
	disclose.Set(time.Now().AddDate(0, 0, 90).Add(time.Minute))
	step("after the disclosure date", chromedp.Navigate(s.base+"/"), chromedp.WaitVisible(chromedp.CSS(fraudRow)))
	if c := text(fraudRow); !strings.Contains(c, "Information différée jusqu'au") || !strings.Contains(c, fraudReference) ||
		!strings.Contains(c, "Contrôle de la sincérité des déclarations") {
		t.Errorf("deferred row %q", c)
	}
	step("scroll to the deferred row", chromedp.ScrollIntoView(chromedp.CSS(fraudRow)))
	shoot("deferred")

	// English.
	step("english", locale("en_GB"), chromedp.Click(chromedp.CSS(`a[hreflang="en"]`)), chromedp.WaitVisible(chromedp.CSS(`html[lang="en"] #filters`)))
	if h := text("h1"); h != "Accesses to your data" {
		t.Errorf("english heading %q", h)
	}
	shoot("english")
	step("back to french", locale("fr_FR"), chromedp.Click(chromedp.CSS(`a[hreflang="fr"]`)), chromedp.WaitVisible(chromedp.CSS(`html[lang="fr"] #filters`)))

	// Logout ends the session: here, at the provider, and for the back button.
	step("logout", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login")))
	if loc := location(); loc != s.base+"/" {
		t.Errorf("after logout at %s", loc)
	}
	step("back", chromedp.NavigateBack(), chromedp.WaitReady(chromedp.CSS("body")))
	if got := run("rows after back", rows); len(got) != 0 {
		t.Errorf("the back button shows accesses after logout: %v", got)
	}
	step("reload", chromedp.Reload(), chromedp.WaitReady(chromedp.CSS("body")))
	if got := run("rows after reload", rows); len(got) != 0 {
		t.Errorf("a reload shows accesses after logout: %v", got)
	}

	// A second citizen sees only her own.
	step("home again", chromedp.Navigate(s.base+"/"), chromedp.WaitVisible(chromedp.ID("login")))
	loginAs(camille)
	if got := run("camille's rows", rows); !slices.Equal(got, []string{idCamille, "camille-cantine"}) {
		t.Errorf("second citizen rows %v", got)
	}
	for _, p := range s.lister.Asked() {
		if p != pz && p != pc {
			t.Fatal("the portal asked for a pseudonym of nobody who logged in")
		}
	}
}
