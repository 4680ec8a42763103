package sandbox

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/relais-broker/relais/broker/catalog"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

//go:embed citizens.yaml
var defaultData []byte

// Behaviour makes a citizen's source misbehave, to rehearse error handling.
type Behaviour string

// The behaviours a citizen can have. The zero value answers normally.
const (
	BehaveNormally Behaviour = ""
	// BehaveUnavailable answers "source unavailable, retry in 30 s".
	BehaveUnavailable Behaviour = "unavailable"
	// BehaveTimeout never answers: the call ends at the source deadline.
	BehaveTimeout Behaviour = "timeout"
	// BehaveInvalidResponse answers a response that breaks its own
	// validation rules, as a faulty source would.
	BehaveInvalidResponse Behaviour = "invalid_response"
)

// Citizen is one fictitious person of the data set.
type Citizen struct {
	// ID is a stable slug, unique in the data set.
	ID string
	// Note says what the citizen is there to demonstrate.
	Note     string
	Identity *commonv1.SubjectIdentity
	// INE (student identifier) and FranceTravailID are the domain
	// identifiers some services can be called with.
	INE             string
	FranceTravailID string
	Behaviour       Behaviour
	// Records holds, per service (keyed by its full name), the complete
	// response the source would give. Absent means the source does not
	// know this person.
	Records map[string]proto.Message

	key identityKey
}

// Dataset is a validated, immutable population of citizens.
type Dataset struct {
	citizens []*Citizen
	byINE    map[string]*Citizen
	byFTID   map[string]*Citizen
	// services maps a record key (scope prefix) to the full service name.
	services map[string]string
	// order lists record keys in catalogue order, for documentation.
	order []string
}

// Citizens returns the citizens in data-set order.
func (d *Dataset) Citizens() []*Citizen { return append([]*Citizen(nil), d.citizens...) }

// Default returns the embedded data set over the default catalogue. The
// embedded file is checked by the tests, so a failure here is a build
// defect and panics.
func Default() *Dataset {
	d, err := Load(defaultData, catalog.Default())
	if err != nil {
		panic(fmt.Sprintf("sandbox: embedded citizens.yaml: %v", err))
	}
	return d
}

// The YAML shapes. Decoding is strict: unknown keys are errors.
type fileYAML struct {
	Citizens []citizenYAML `yaml:"citizens"`
}

type citizenYAML struct {
	ID              string               `yaml:"id"`
	Note            string               `yaml:"note"`
	Identity        identityYAML         `yaml:"identity"`
	INE             string               `yaml:"ine"`
	FranceTravailID string               `yaml:"france_travail_id"`
	Behaviour       Behaviour            `yaml:"behaviour"`
	Records         map[string]yaml.Node `yaml:"records"`
}

type identityYAML struct {
	BirthName       string   `yaml:"birth_name"`
	UsageName       string   `yaml:"usage_name"`
	GivenNames      []string `yaml:"given_names"`
	Sex             string   `yaml:"sex"`
	BirthDate       string   `yaml:"birth_date"`
	BirthPlaceCOG   string   `yaml:"birth_place_cog"`
	BirthCountryCOG string   `yaml:"birth_country_cog"`
}

var (
	idPattern      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	inePattern     = regexp.MustCompile(`^[0-9A-Z]{11}$`)
	ftidPattern    = regexp.MustCompile(`^[0-9A-Z]{8,11}$`)
	datePattern    = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	cogPlace       = regexp.MustCompile(`^([0-9]{5}|2[AB][0-9]{3})$`)
	cogCountry     = regexp.MustCompile(`^99[0-9]{3}$`)
	errNoCitizens  = errors.New("no citizens")
	sexes          = map[string]commonv1.Sex{"F": commonv1.Sex_SEX_FEMALE, "M": commonv1.Sex_SEX_MALE}
	knownBehaviour = map[Behaviour]bool{BehaveNormally: true, BehaveUnavailable: true, BehaveTimeout: true, BehaveInvalidResponse: true}
)

// Load decodes and validates a data set for the services of cat. Errors
// name the citizen and, for records, the YAML line.
func Load(data []byte, cat *catalog.Catalog) (*Dataset, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f fileYAML
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("sandbox data: %w", err)
	}
	if len(f.Citizens) == 0 {
		return nil, fmt.Errorf("sandbox data: %w", errNoCitizens)
	}
	d := &Dataset{byINE: map[string]*Citizen{}, byFTID: map[string]*Citizen{}, services: map[string]string{}}
	for _, svc := range cat.Services() {
		key, err := recordKey(cat, svc)
		if err != nil {
			return nil, err
		}
		d.services[key] = svc
		d.order = append(d.order, key)
	}
	seen := map[string]bool{}
	for i, cy := range f.Citizens {
		c, err := d.citizen(cy, cat)
		if err != nil {
			name := cy.ID
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			return nil, fmt.Errorf("sandbox data: citizen %s: %w", name, err)
		}
		if seen[c.ID] {
			return nil, fmt.Errorf("sandbox data: citizen %s: duplicate id", c.ID)
		}
		seen[c.ID] = true
		if c.INE != "" {
			if other := d.byINE[c.INE]; other != nil {
				return nil, fmt.Errorf("sandbox data: citizen %s: INE already used by %s", c.ID, other.ID)
			}
			d.byINE[c.INE] = c
		}
		if c.FranceTravailID != "" {
			if other := d.byFTID[c.FranceTravailID]; other != nil {
				return nil, fmt.Errorf("sandbox data: citizen %s: France Travail id already used by %s", c.ID, other.ID)
			}
			d.byFTID[c.FranceTravailID] = c
		}
		d.citizens = append(d.citizens, c)
	}
	return d, nil
}

// recordKey is the scope prefix shared by every scope of svc.
func recordKey(cat *catalog.Catalog, svc string) (string, error) {
	scopes, _ := cat.ServiceScopes(svc)
	key := ""
	for _, s := range scopes.Sorted() {
		prefix, _, _ := strings.Cut(s, ".")
		if key != "" && prefix != key {
			return "", fmt.Errorf("sandbox: service %s has scopes under two prefixes (%s, %s)", svc, key, prefix)
		}
		key = prefix
	}
	if key == "" {
		return "", fmt.Errorf("sandbox: service %s has no scope", svc)
	}
	return key, nil
}

func (d *Dataset) citizen(cy citizenYAML, cat *catalog.Catalog) (*Citizen, error) {
	if !idPattern.MatchString(cy.ID) {
		return nil, fmt.Errorf("id %q: want lower-case letters, digits and dashes", cy.ID)
	}
	if strings.TrimSpace(cy.Note) == "" {
		return nil, errors.New("note is required: say what this citizen demonstrates")
	}
	id, err := cy.Identity.proto()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if cy.INE != "" && !inePattern.MatchString(cy.INE) {
		return nil, fmt.Errorf("ine %q: want 11 upper-case letters or digits", cy.INE)
	}
	if cy.FranceTravailID != "" && !ftidPattern.MatchString(cy.FranceTravailID) {
		return nil, fmt.Errorf("france_travail_id %q: want 8 to 11 upper-case letters or digits", cy.FranceTravailID)
	}
	if !knownBehaviour[cy.Behaviour] {
		return nil, fmt.Errorf("behaviour %q: want one of unavailable, timeout, invalid_response", cy.Behaviour)
	}
	c := &Citizen{
		ID: cy.ID, Note: strings.TrimSpace(cy.Note), Identity: id, INE: cy.INE, FranceTravailID: cy.FranceTravailID,
		Behaviour: cy.Behaviour, Records: map[string]proto.Message{}, key: keyOf(id),
	}
	for key, node := range cy.Records {
		svc, ok := d.services[key]
		if !ok {
			return nil, fmt.Errorf("line %d: unknown record %q (want one of %s)", node.Line, key, strings.Join(d.order, ", "))
		}
		m, _ := cat.Method(methodOf(cat, svc))
		msg, err := decodeRecord(&node, m.Output)
		if err != nil {
			return nil, fmt.Errorf("line %d: record %s: %w", node.Line, key, err)
		}
		c.Records[svc] = msg
	}
	if len(c.Records) == 0 && c.Behaviour == BehaveNormally {
		return nil, errors.New("no records: a citizen no source knows is just 'not found'; leave them out")
	}
	return c, nil
}

// methodOf returns the full method of svc's single method.
func methodOf(cat *catalog.Catalog, svc string) string {
	for _, m := range cat.Methods() {
		if m.Service == svc {
			return m.FullMethod
		}
	}
	return ""
}

// decodeRecord turns a YAML mapping into the proto JSON form of typ, then
// decodes it strictly (unknown fields and bad enum names are errors).
func decodeRecord(node *yaml.Node, typ protoreflect.MessageType) (proto.Message, error) {
	var v any
	if err := node.Decode(&v); err != nil {
		return nil, err
	}
	js, err := json.Marshal(jsonable(v))
	if err != nil {
		return nil, err
	}
	msg := typ.New().Interface()
	if err := protojson.Unmarshal(js, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// jsonable converts what yaml decodes into values encoding/json accepts:
// dates stay dates (YAML may read 2024-01-31 as a timestamp).
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
		return x
	case time.Time:
		return x.Format(time.DateOnly)
	default:
		return v
	}
}

func (y identityYAML) proto() (*commonv1.SubjectIdentity, error) {
	sex, ok := sexes[y.Sex]
	if !ok {
		return nil, fmt.Errorf("sex %q: want F or M", y.Sex)
	}
	switch {
	case strings.TrimSpace(y.BirthName) == "":
		return nil, errors.New("birth_name is required")
	case len(y.GivenNames) == 0:
		return nil, errors.New("given_names is required")
	case !datePattern.MatchString(y.BirthDate):
		return nil, fmt.Errorf("birth_date %q: want YYYY-MM-DD", y.BirthDate)
	case !cogCountry.MatchString(y.BirthCountryCOG):
		return nil, fmt.Errorf("birth_country_cog %q: want a 99xxx COG code", y.BirthCountryCOG)
	case y.BirthCountryCOG == franceCOG && !cogPlace.MatchString(y.BirthPlaceCOG):
		return nil, fmt.Errorf("birth_place_cog %q: want a commune COG code for a birth in France", y.BirthPlaceCOG)
	case y.BirthCountryCOG != franceCOG && y.BirthPlaceCOG != "":
		return nil, errors.New("birth_place_cog is only for births in France")
	}
	if _, err := time.Parse(time.DateOnly, y.BirthDate); err != nil {
		return nil, fmt.Errorf("birth_date %q: %w", y.BirthDate, err)
	}
	return &commonv1.SubjectIdentity{
		BirthName: y.BirthName, UsageName: y.UsageName, GivenNames: y.GivenNames, Sex: sex,
		BirthDate: y.BirthDate, BirthPlaceCog: y.BirthPlaceCOG, BirthCountryCog: y.BirthCountryCOG,
	}, nil
}

// franceCOG is the COG code of France as a birth country.
const franceCOG = "99100"
