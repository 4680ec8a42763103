package subject

import (
	"bytes"
	"testing"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	studentstatusv1 "github.com/relais-broker/relais/proto/relais/studentstatus/v1"
)

func TestPseudonyms(t *testing.T) {
	p, err := New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New(bytes.Repeat([]byte{8}, 32))
	id := func(name, given string) *familyquotientv1.GetFamilyQuotientRequest {
		return &familyquotientv1.GetFamilyQuotientRequest{Subject: &commonv1.SubjectIdentity{BirthName: name, GivenNames: []string{given, "Marie"},
			Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1984-03-12", BirthPlaceCog: "75056", BirthCountryCog: "99100"}}
	}
	a, b := p.Of(id("Dupont", "Zoé")), p.Of(id("DUPONT", "zoe"))
	if a == "" || a != b {
		t.Fatalf("spellings of one person differ: %s %s", a, b)
	}
	if a == p.Of(id("DUPONT", "Léa")) {
		t.Fatal("two people share a pseudonym")
	}
	if a == other.Of(id("Dupont", "Zoé")) {
		t.Fatal("the pseudonym does not depend on the key")
	}
	if bytes.Contains([]byte(a), []byte("DUPONT")) || len(a) != 64 {
		t.Fatalf("pseudonym %q", a)
	}
	ine := &studentstatusv1.GetStudentStatusRequest{Subject: &studentstatusv1.GetStudentStatusRequest_Ine{Ine: "SBXINE00001"}}
	if p.Of(ine) == "" || p.Of(ine) == a {
		t.Fatal("INE pseudonym")
	}
	if p.Of(&familyquotientv1.GetFamilyQuotientRequest{}) != "" {
		t.Fatal("no subject must give no pseudonym")
	}
	if _, err := New([]byte("short")); err != ErrShortKey {
		t.Fatalf("short key: %v", err)
	}
}

func TestNormaliseName(t *testing.T) {
	for in, want := range map[string]string{
		"Le Gall-Kerbrat":      "LE GALL KERBRAT",
		"  le  gall  kerbrat ": "LE GALL KERBRAT",
		"Müller":               "MULLER",
		"d’Almeida":            "D ALMEIDA",
		"Zoé":                  "ZOE",
		"ÇAĞLAR":               "CAGLAR",
	} {
		if got := NormaliseName(in); got != want {
			t.Errorf("NormaliseName(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkOf measures the pseudonym of a request, on every call's path:
//
//	go test -run XXX -bench Of -benchmem ./broker/subject/
func BenchmarkOf(b *testing.B) {
	p, _ := New(bytes.Repeat([]byte{7}, 32))
	req := &familyquotientv1.GetFamilyQuotientRequest{Subject: &commonv1.SubjectIdentity{BirthName: "Le Gall-Kerbrat", GivenNames: []string{"Zoé", "Marie"},
		Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1984-03-12", BirthPlaceCog: "75056", BirthCountryCog: "99100"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Of(req)
	}
}
