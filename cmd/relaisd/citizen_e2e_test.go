package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/localserver"
	"github.com/relais-broker/relais/internal/netcut"
	asfv1 "github.com/relais-broker/relais/proto/relais/asf/v1"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

var (
	portalOnce sync.Once
	portalBin  string
	portalErr  error
)

// citizenPortal builds examples/citizen-portal once: the tests get their
// tokens through its `token` command, i.e. through the provider's real
// login flow.
func citizenPortal(t *testing.T) string {
	t.Helper()
	binaries(t) // creates binDir
	portalOnce.Do(func() {
		portalBin = filepath.Join(binDir, "citizen-portal")
		if out, err := exec.Command("go", "build", "-o", portalBin, "../../examples/citizen-portal").CombinedOutput(); err != nil {
			portalErr = &buildFailure{"citizen-portal", string(out), err}
		}
	})
	if portalErr != nil {
		t.Fatal(portalErr)
	}
	return portalBin
}

// citizenToken logs in as citizen at d's provider (issuer) for client and
// returns the access token the example prints.
func citizenToken(t *testing.T, d *devBroker, issuer, client, citizen string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, citizenPortal(t), "token", "--citizen", citizen, "--client-id", client, "--issuer", issuer, "--data-dir", d.dataDir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("citizen-portal token --citizen %q: %v\n%s", citizen, err, stderr.String())
	}
	tok := strings.TrimSpace(string(out))
	if tok == "" || strings.ContainsAny(tok, " \n") {
		t.Fatalf("citizen-portal token printed %q, not one token", out)
	}
	return tok
}

func fqByToken(token string) *familyquotientv1.GetFamilyQuotientRequest {
	return &familyquotientv1.GetFamilyQuotientRequest{
		AccessContext:      &commonv1.AccessContext{Recipient: devenv.FullConsumer.SIRET, Purpose: "tarification_sociale", CaseReference: "DOSSIER-CITOYEN-1"},
		CitizenAccessToken: token,
	}
}

// refusedWith asserts err is code with ErrorInfo reason and returns the
// RetryInfo, if any.
func refusedWith(t *testing.T, what string, err error, code codes.Code, reason string) *errdetails.RetryInfo {
	t.Helper()
	st := status.Convert(err)
	var got string
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		switch v := d.(type) {
		case *errdetails.ErrorInfo:
			got = v.GetReason()
		case *errdetails.RetryInfo:
			retry = v
		}
	}
	if st.Code() != code || got != reason {
		t.Fatalf("%s: %v / %q (%s), want %v / %q", what, st.Code(), got, st.Message(), code, reason)
	}
	return retry
}

// auditJSONL is `relaisctl audit query -o jsonl` of the running broker d.
func auditJSONL(t *testing.T, d *devBroker) []map[string]any {
	t.Helper()
	out, err := shell(t, "relaisctl audit query -o jsonl "+adminFlags(d))
	if err != nil {
		t.Fatalf("relaisctl audit query: %v\n%s", err, out)
	}
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit query line %q: %v", line, err)
		}
		if r["operator"] == nil {
			recs = append(recs, r)
		}
	}
	return recs
}

// TestCitizenLoginEndToEnd runs relaisd dev (its provider behind a TCP
// proxy that can cut it off), logs citizens in through the example portal's
// real login flow, and calls the broker with their tokens: the citizen's
// own data, minimised as granted, the same pseudonym as a typed identity,
// each designation mode refused where the grant does not list it, every
// kind of bad token refused with its reason, the provider's outage
// answered identity_provider_unavailable and recovered without restart,
// and the token in no log line, no audit byte and no store file.
func TestCitizenLoginEndToEnd(t *testing.T) {
	port, err := localserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	idpAddr := fmt.Sprintf("127.0.0.1:%d", port)
	proxy, err := netcut.New(idpAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	issuer := "https://" + proxy.Addr()
	d := startDevIn(t, filepath.Join(t.TempDir(), "relais-dev"), "--idp-listen", idpAddr, "--idp-issuer", issuer)
	if d.issuer != issuer || d.portalURL == "" {
		t.Fatalf("banner: citizen login %q, portal %q", d.issuer, d.portalURL)
	}
	full := familyquotientv1.NewFamilyQuotientServiceClient(grpcConn(t, d, devenv.FullConsumer.Dir))
	ctx := context.Background()

	zoe := citizenToken(t, d, issuer, "citizen-portal", "DUPONT Zoé")
	byToken, err := full.GetFamilyQuotient(ctx, fqByToken(zoe))
	if err != nil {
		t.Fatalf("call with Zoé's token: %v", err)
	}
	typed, err := full.GetFamilyQuotient(ctx, &familyquotientv1.GetFamilyQuotientRequest{AccessContext: fqByToken("").AccessContext, Subject: zoeIdentity()})
	if err != nil {
		t.Fatalf("typed call: %v", err)
	}
	if byToken.GetValue() != 755 || byToken.GetValue() != typed.GetValue() || len(byToken.GetChildren()) != len(typed.GetChildren()) {
		t.Fatalf("by token %d (%d children), typed %d (%d children): want Zoé's 755 both ways", byToken.GetValue(), len(byToken.GetChildren()), typed.GetValue(), len(typed.GetChildren()))
	}
	// A field mask narrows a citizen-initiated call as any other.
	masked := fqByToken(zoe)
	masked.FieldMask = &fieldmaskpb.FieldMask{Paths: []string{"value"}}
	if r, err := full.GetFamilyQuotient(ctx, masked); err != nil || r.GetValue() != 755 || r.GetAddress() != nil || len(r.GetBeneficiaries()) > 0 {
		t.Fatalf("masked call by token: %v %v", r, err)
	}

	// The limited consumer's grants are typed-only (the default): its
	// citizen-initiated call is refused before the provider is asked.
	limitedConn := grpcConn(t, d, devenv.LimitedConsumer.Dir)
	limited := familyquotientv1.NewFamilyQuotientServiceClient(limitedConn)
	req := fqByToken(zoe)
	req.AccessContext = &commonv1.AccessContext{Recipient: devenv.LimitedConsumer.SIRET, Purpose: "aide_sociale_facultative", CaseReference: "CCAS-1"}
	_, err = limited.GetFamilyQuotient(ctx, req)
	refusedWith(t, "token under a typed-only grant", err, codes.PermissionDenied, "designation_not_granted")

	// A citizen-login-only grant: the token gets the granted field only,
	// a typed identity is refused.
	out, err := shell(t, "relaisctl grants add "+adminFlags(d)+" --consumer "+devenv.LimitedConsumer.SIRET+
		" --service relais.asf.v1.FamilySupportAllowanceService --scopes family_support_allowance.status"+
		" --purpose 'aide_sociale_facultative:Instruction d aide facultative:CASF art. L123-5' --until 2030-01-01 --rate 10 --burst 20 --designation citizen_login")
	if err != nil {
		t.Fatalf("grants add: %v\n%s", err, out)
	}
	asf := asfv1.NewFamilySupportAllowanceServiceClient(limitedConn)
	ines := citizenToken(t, d, issuer, "citizen-portal", "BERNARD Inès")
	ctxCCAS := &commonv1.AccessContext{Recipient: devenv.LimitedConsumer.SIRET, Purpose: "aide_sociale_facultative", CaseReference: "CCAS-2"}
	got, err := asf.GetFamilySupportAllowance(ctx, &asfv1.GetFamilySupportAllowanceRequest{AccessContext: ctxCCAS, CitizenAccessToken: ines})
	if err != nil {
		t.Fatalf("ASF by Inès's token under a citizen-login grant: %v", err)
	}
	if !got.GetIsBeneficiary() || got.GetRightsStartDate() != "" {
		t.Fatalf("ASF answer %v: want the status only (rights not granted)", got)
	}
	_, err = asf.GetFamilySupportAllowance(ctx, &asfv1.GetFamilySupportAllowanceRequest{AccessContext: ctxCCAS,
		Subject: &commonv1.SubjectIdentity{BirthName: "BERNARD", GivenNames: []string{"Inès"}, Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1975-06-14", BirthPlaceCog: "31555", BirthCountryCog: "99100"}})
	refusedWith(t, "typed identity under a citizen-login-only grant", err, codes.PermissionDenied, "designation_not_granted")

	// Bad tokens, each with its reason; the consumer's own mTLS identity
	// is unaffected (the next good call passes on the same connection).
	tampered := []byte(zoe)
	i := len(tampered) / 2
	tampered[i] = map[bool]byte{true: 'B', false: 'A'}[tampered[i] == 'A']
	_, err = full.GetFamilyQuotient(ctx, fqByToken(string(tampered)))
	refusedWith(t, "tampered token", err, codes.InvalidArgument, "citizen_token_invalid")
	other := citizenToken(t, d, issuer, "other-town", "DUPONT Zoé")
	_, err = full.GetFamilyQuotient(ctx, fqByToken(other))
	refusedWith(t, "token of a client without the relais audience", err, codes.InvalidArgument, "citizen_token_wrong_audience")

	// Another installation's provider (a second dev broker, whose tokens
	// live 2 s): its token is unknown here; and its own broker refuses it
	// once expired.
	d2 := startDevIn(t, filepath.Join(t.TempDir(), "relais-dev-2"), "--idp-token-lifetime", "2s")
	foreign := citizenToken(t, d2, d2.issuer, "citizen-portal", "DUPONT Zoé")
	_, err = full.GetFamilyQuotient(ctx, fqByToken(foreign))
	refusedWith(t, "token of another provider", err, codes.InvalidArgument, "citizen_token_invalid")
	full2 := familyquotientv1.NewFamilyQuotientServiceClient(grpcConn(t, d2, devenv.FullConsumer.Dir))
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err = full2.GetFamilyQuotient(ctx, fqByToken(foreign))
		if status.Code(err) != codes.OK || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling for the token's end, not racing it
	}
	refusedWith(t, "expired token", err, codes.InvalidArgument, "citizen_token_expired")

	// The provider cut off: Unavailable with a retry delay, then back
	// without restarting the broker.
	proxy.Cut()
	_, err = full.GetFamilyQuotient(ctx, fqByToken(zoe))
	if retry := refusedWith(t, "provider down", err, codes.Unavailable, "identity_provider_unavailable"); retry == nil {
		t.Fatal("identity_provider_unavailable without RetryInfo")
	}
	proxy.Restore()
	if _, err := full.GetFamilyQuotient(ctx, fqByToken(zoe)); err != nil {
		t.Fatalf("after the provider came back: %v", err)
	}

	// The trace: a citizen-initiated call names its origin and the same
	// pseudonym as the typed one; refusals are traced too.
	recs := auditJSONL(t, d)
	pseudonyms := map[string]map[string]bool{}
	refused := map[string]int{}
	for _, r := range recs {
		origin, _ := r["subject_origin"].(string)
		if r["code"] == "OK" && strings.HasSuffix(fmt.Sprint(r["method"]), "/GetFamilyQuotient") && r["consumer_siret"] == devenv.FullConsumer.SIRET {
			if pseudonyms[origin] == nil {
				pseudonyms[origin] = map[string]bool{}
			}
			pseudonyms[origin][fmt.Sprint(r["subject_pseudonym"])] = true
		}
		if reason, _ := r["reason"].(string); reason != "" {
			refused[reason]++
		}
	}
	if len(pseudonyms["citizen_login"]) != 1 || len(pseudonyms[""]) != 1 {
		t.Fatalf("pseudonyms by origin %v: want one each", pseudonyms)
	}
	for p := range pseudonyms["citizen_login"] {
		if !pseudonyms[""][p] {
			t.Fatalf("the citizen-initiated pseudonym %s differs from the typed one %v", p, pseudonyms[""])
		}
	}
	for _, reason := range []string{"designation_not_granted", "citizen_token_invalid", "citizen_token_wrong_audience", "identity_provider_unavailable"} {
		if refused[reason] == 0 {
			t.Errorf("no audit record of a %s refusal (%v)", reason, refused)
		}
	}

	// No token anywhere at rest or in the logs: stop the brokers (their
	// files complete), then scan every byte they wrote.
	for _, b := range []*devBroker{d, d2} {
		_ = b.cmd.Process.Signal(os.Interrupt)
		_ = b.cmd.Wait()
	}
	tokens := map[string]string{"Zoé's": zoe, "Inès's": ines, "other-town's": other, "the foreign": foreign}
	for _, b := range []*devBroker{d, d2} {
		files := []string{b.stderr.Name()}
		_ = filepath.WalkDir(b.dataDir, func(path string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				files = append(files, path)
			}
			return nil
		})
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for name, tok := range tokens {
				// The whole token, and a 24-byte piece of it (a log that
				// truncates would still leak).
				for _, needle := range []string{tok, tok[len(tok)/2 : len(tok)/2+24]} {
					if bytes.Contains(raw, []byte(needle)) {
						t.Errorf("%s token found in %s", name, f)
					}
				}
			}
		}
	}
}
