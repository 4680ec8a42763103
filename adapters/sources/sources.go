// Package sources builds the source adapters of the typed services from a
// configuration file: which adapter kind serves which service (sandbox,
// httpjson with one of the known upstream formats, remote), its TLS
// credentials, timeout and resilience settings. Every adapter is wrapped
// in its own resilience guard. The file is decoded strictly: an unknown
// key is an error with its line.
package sources

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/relais-broker/relais/adapters/httpjson"
	"github.com/relais-broker/relais/adapters/remote"
	"github.com/relais-broker/relais/adapters/resilience"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/source"
)

// File is the configuration file.
type File struct {
	Sources []Entry `yaml:"sources"`
}

// Entry configures the source of one typed service.
type Entry struct {
	// Service is the full service name.
	Service string `yaml:"service"`
	// ID names the source in metadata, logs and the audit log.
	ID string `yaml:"id"`
	// Kind is sandbox, httpjson or remote.
	Kind    string        `yaml:"kind"`
	Timeout time.Duration `yaml:"timeout"`
	// HTTPJSON: base URL, provider, auth, and the upstream format
	// (family_quotient_caf, job_seeker_france_travail, rsa_cnav or
	// national_service_dsnj).
	BaseURL       string `yaml:"base_url"`
	Provider      string `yaml:"provider"`
	Format        string `yaml:"format"`
	AuthHeader    string `yaml:"auth_header"`
	AuthValueFile string `yaml:"auth_value_file"`
	// Remote: the source's gRPC address.
	Addr string `yaml:"addr"`
	// TLS to the upstream: CA bundle, and a client certificate for mTLS.
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
	// ProbeInterval, when set, probes the source with the subject of
	// ProbeRequest (a proto-JSON request for the service's method, naming
	// a fictitious person the source keeps for that purpose).
	ProbeInterval time.Duration `yaml:"probe_interval"`
	ProbeRequest  string        `yaml:"probe_request"`
	// Resilience settings.
	MaxConcurrent    int                 `yaml:"max_concurrent"`
	FailureThreshold int                 `yaml:"failure_threshold"`
	OpenFor          time.Duration       `yaml:"open_for"`
	Retries          int                 `yaml:"retries"`
	Maintenance      []resilience.Window `yaml:"maintenance"`
}

// Built is a configured source, ready for broker.Config.Sources.
type Built struct {
	Service, ID string
	Adapter     source.Adapter
	Guard       *resilience.Guard
	Timeout     time.Duration
	// Probe, when set, is the request to probe the source with every
	// ProbeInterval (Guard.Probe).
	Probe         *source.Request
	ProbeInterval time.Duration
	// Closer, when set, releases what the adapter holds (connections);
	// whoever replaces the source closes it.
	Closer io.Closer
}

// formats are the upstream formats httpjson knows.
var formats = map[string]struct {
	method string
	route  func() httpjson.Route
}{
	"family_quotient_caf":       {httpjson.FamilyQuotientMethod, httpjson.FamilyQuotientRoute},
	"job_seeker_france_travail": {httpjson.JobSeekerMethod, httpjson.JobSeekerRoute},
	// API particulier v3's published formats.
	"rsa_cnav":              {httpjson.RsaMethod, httpjson.RsaRoute},
	"national_service_dsnj": {httpjson.NationalServiceMethod, httpjson.NationalServiceRoute},
}

// formatNames lists the known formats, sorted, for error messages.
func formatNames() string {
	names := make([]string, 0, len(formats))
	for name := range formats {
		names = append(names, name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Load reads and builds the file at path; sandbox is the adapter used for
// entries of kind sandbox.
func Load(path string, cat *catalog.Catalog, sandbox source.Adapter) ([]Built, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]bool{}
	var out []Built
	fail := func(err error) ([]Built, error) {
		for _, b := range out {
			if b.Closer != nil {
				_ = b.Closer.Close()
			}
		}
		return nil, err
	}
	for i, e := range f.Sources {
		b, err := build(e, cat, sandbox)
		if err != nil {
			return fail(fmt.Errorf("%s: sources[%d] (%s): %w", path, i, e.Service, err))
		}
		out = append(out, b)
		if seen[e.Service] {
			return fail(fmt.Errorf("%s: service %s is configured twice", path, e.Service))
		}
		seen[e.Service] = true
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out, nil
}

func build(e Entry, cat *catalog.Catalog, sandbox source.Adapter) (Built, error) {
	if _, ok := cat.ServiceScopes(e.Service); !ok {
		return Built{}, fmt.Errorf("unknown service %q", e.Service)
	}
	if e.ID == "" {
		return Built{}, errors.New("id is required")
	}
	if e.Timeout <= 0 {
		e.Timeout = 5 * time.Second
	}
	var inner source.Adapter
	var closer io.Closer
	switch e.Kind {
	case "sandbox":
		inner = sandbox
	case "httpjson":
		format, ok := formats[e.Format]
		if !ok {
			return Built{}, fmt.Errorf("format %q: want one of %s", e.Format, formatNames())
		}
		if m, _ := cat.Method(format.method); m == nil || m.Service != e.Service {
			return Built{}, fmt.Errorf("format %q does not serve %s", e.Format, e.Service)
		}
		tlsCfg, err := e.tlsConfig()
		if err != nil {
			return Built{}, err
		}
		a, err := httpjson.New(httpjson.Config{SourceID: e.ID, Provider: e.Provider, BaseURL: e.BaseURL, TLS: tlsCfg, AuthHeader: e.AuthHeader,
			AuthValueFile: e.AuthValueFile, Routes: map[string]httpjson.Route{format.method: format.route()}, Catalog: cat})
		if err != nil {
			return Built{}, err
		}
		inner = a
	case "remote":
		tlsCfg, err := e.tlsConfig()
		if err != nil {
			return Built{}, err
		}
		if tlsCfg == nil || len(tlsCfg.Certificates) == 0 {
			return Built{}, errors.New("remote sources need ca_file, cert_file and key_file (mTLS)")
		}
		a, err := remote.New(remote.Config{Addr: e.Addr, TLS: tlsCfg, Catalog: cat})
		if err != nil {
			return Built{}, err
		}
		inner, closer = a, a
	default:
		return Built{}, fmt.Errorf("kind %q: want sandbox, httpjson or remote", e.Kind)
	}
	g := resilience.New(inner, resilience.Config{MaxConcurrent: e.MaxConcurrent, FailureThreshold: e.FailureThreshold, OpenFor: e.OpenFor,
		Retries: e.Retries, Maintenance: e.Maintenance})
	b := Built{Service: e.Service, ID: e.ID, Adapter: g, Guard: g, Timeout: e.Timeout, Closer: closer}
	if e.ProbeInterval > 0 {
		probe, err := probeRequest(cat, e)
		if err != nil {
			if closer != nil {
				_ = closer.Close()
			}
			return Built{}, err
		}
		b.Probe, b.ProbeInterval = probe, e.ProbeInterval
	}
	return b, nil
}

// probeRequest decodes the probe's request for the service's method; the
// probe asks for every scope.
func probeRequest(cat *catalog.Catalog, e Entry) (*source.Request, error) {
	for _, m := range cat.Methods() {
		if m.Service != e.Service {
			continue
		}
		in := m.Input.New().Interface()
		if err := protojson.Unmarshal([]byte(e.ProbeRequest), in); err != nil {
			return nil, fmt.Errorf("probe_request: %w", err)
		}
		return &source.Request{Method: m.FullMethod, Input: in, Scopes: m.Scopes}, nil
	}
	return nil, fmt.Errorf("service %s has no method", e.Service)
}

// tlsConfig builds the client TLS configuration, nil when none is set.
func (e Entry) tlsConfig() (*tls.Config, error) {
	if e.CAFile == "" && e.CertFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: e.ServerName}
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no certificate", e.CAFile)
		}
	}
	if e.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
