// Package httpjson is the adapter for a source administration's REST/JSON
// API: per method, a route builds the HTTP request from the subject
// (path and query templates), and a mapping fills the typed response from
// JSON paths. Upstream answers are untrusted: the body is size-limited,
// the content type checked, the JSON decoded into generic values and
// mapped field by field with type checks — an unknown or invalid shape is
// ErrInvalidResponse, never a panic and never a half-filled response.
// HTTP statuses map onto the adapter contract (404 not found, 409/422 not
// identifiable, 429/502/503/504 unavailable with Retry-After, other 5xx
// unavailable, anything else invalid).
package httpjson

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/minimise"
	"github.com/relais-broker/relais/broker/source"
)

// Config configures an adapter for one upstream.
type Config struct {
	// SourceID names the source in response metadata.
	SourceID string `yaml:"source_id"`
	// Provider is the administration named in response metadata.
	Provider string `yaml:"provider"`
	// BaseURL is the upstream's base, https://… (http only for tests on
	// loopback).
	BaseURL string `yaml:"base_url"`
	// TLS is the client configuration (mTLS to the upstream when it holds
	// a certificate); nil uses the system roots.
	TLS *tls.Config `yaml:"-"`
	// AuthHeader and AuthValueFile: a header whose value is read from a
	// secret file at start (never from the configuration itself).
	AuthHeader    string `yaml:"auth_header"`
	AuthValueFile string `yaml:"auth_value_file"`
	// MaxBody bounds the response body (1 MiB when zero).
	MaxBody int64 `yaml:"max_body"`
	// Routes maps a full gRPC method to its HTTP route.
	Routes map[string]Route `yaml:"routes"`
	// Catalog defaults to catalog.Default().
	Catalog *catalog.Catalog `yaml:"-"`
	// Clock stamps responses; time.Now when nil.
	Clock func() time.Time `yaml:"-"`
}

// Route builds one upstream request and maps its answer.
type Route struct {
	// Path is appended to BaseURL; Query holds query parameters. Both
	// may use {birth_name}, {usage_name}, {given_names} (space-joined),
	// {first_given_name}, {sex} (F/M), {birth_date}, {birth_year},
	// {birth_month}, {birth_day} (unpadded), {birth_place_cog},
	// {birth_country_cog}, {ine}, {france_travail_id}.
	Path  string            `yaml:"path"`
	Query map[string]string `yaml:"query"`
	// Mapping fills the response's fields from the JSON answer.
	Mapping Mapping `yaml:"mapping"`
	// ValidFor is how long the source says its answer stays valid.
	ValidFor time.Duration `yaml:"valid_for"`
}

// Adapter calls one upstream.
type Adapter struct {
	cfg    Config
	client *http.Client
	auth   string
}

var _ source.Adapter = (*Adapter)(nil)

// New checks cfg, reads the auth secret and returns the adapter.
func New(cfg Config) (*Adapter, error) {
	if cfg.Catalog == nil {
		cfg.Catalog = catalog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		return nil, fmt.Errorf("httpjson %s: base_url %q must be https (http only on loopback, for tests)", cfg.SourceID, cfg.BaseURL)
	}
	if cfg.SourceID == "" || cfg.Provider == "" || len(cfg.Routes) == 0 {
		return nil, fmt.Errorf("httpjson: source_id, provider and at least one route are required")
	}
	for method, r := range cfg.Routes {
		m, ok := cfg.Catalog.Method(method)
		if !ok {
			return nil, fmt.Errorf("httpjson %s: route for unknown method %q", cfg.SourceID, method)
		}
		if err := r.Mapping.check(m.Output.Descriptor()); err != nil {
			return nil, fmt.Errorf("httpjson %s: mapping of %s: %w", cfg.SourceID, method, err)
		}
	}
	a := &Adapter{cfg: cfg}
	if cfg.AuthHeader != "" {
		raw, err := os.ReadFile(cfg.AuthValueFile)
		if err != nil {
			return nil, fmt.Errorf("httpjson %s: auth_value_file: %w", cfg.SourceID, err)
		}
		a.auth = strings.TrimSpace(string(raw))
	}
	a.client = &http.Client{
		Transport: &http.Transport{TLSClientConfig: cfg.TLS, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 32, ResponseHeaderTimeout: 0},
		// Never follow redirects: an upstream that moves is misconfigured.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return a, nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// Fetch implements source.Adapter.
func (a *Adapter) Fetch(ctx context.Context, req source.Request) (proto.Message, error) {
	route, ok := a.cfg.Routes[req.Method]
	m, known := a.cfg.Catalog.Method(req.Method)
	if !ok || !known {
		return nil, fmt.Errorf("httpjson %s: no route for %s", a.cfg.SourceID, req.Method)
	}
	vars, err := subjectVars(req.Input)
	if err != nil {
		return nil, err
	}
	u := strings.TrimRight(a.cfg.BaseURL, "/") + expand(route.Path, vars, url.PathEscape)
	if len(route.Query) > 0 {
		q := url.Values{}
		for k, v := range route.Query {
			q.Set(k, expand(v, vars, func(s string) string { return s }))
		}
		u += "?" + q.Encode()
	}
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("httpjson %s: build request: %w", a.cfg.SourceID, errors.Unwrap(err))
	}
	httpReq.Header.Set("Accept", "application/json")
	if a.cfg.AuthHeader != "" {
		httpReq.Header.Set(a.cfg.AuthHeader, a.auth)
	}
	resp, err := a.client.Do(httpReq)
	if err != nil {
		return nil, a.transportError(ctx, err)
	}
	defer resp.Body.Close()
	if err := a.statusError(resp); err != nil {
		return nil, err
	}
	body, err := a.readBody(resp)
	if err != nil {
		return nil, err
	}
	out := m.Output.New().Interface()
	if err := route.Mapping.fill(body, out.ProtoReflect()); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", source.ErrInvalidResponse, a.cfg.SourceID, err)
	}
	now := a.cfg.Clock()
	setSource(out, a.cfg.SourceID, a.cfg.Provider, now, route.ValidFor)
	minimise.Apply(m, out, req.Scopes)
	return out, nil
}

// transportError maps a failed round trip. The URL (which holds the
// subject in its query) is never part of the message.
func (a *Adapter) transportError(ctx context.Context, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%w: %s did not answer before the deadline", source.ErrTimeout, a.cfg.SourceID)
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("%s: %w", a.cfg.SourceID, context.Canceled)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // drop the URL
	}
	return &source.RetryableError{Cause: fmt.Errorf("%s unreachable: %v", a.cfg.SourceID, err)}
}

func (a *Adapter) statusError(resp *http.Response) error {
	code := resp.StatusCode
	switch {
	case code == http.StatusOK:
		return nil
	case code == http.StatusNotFound:
		return fmt.Errorf("%w (%s answered 404)", source.ErrSubjectNotFound, a.cfg.SourceID)
	case code == http.StatusConflict || code == http.StatusUnprocessableEntity:
		return fmt.Errorf("%w (%s answered %d)", source.ErrNotIdentifiable, a.cfg.SourceID, code)
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable || code == http.StatusBadGateway || code == http.StatusGatewayTimeout || code >= 500:
		return &source.RetryableError{RetryAfter: retryAfter(resp.Header.Get("Retry-After"), a.cfg.Clock()), Cause: fmt.Errorf("%s answered %d", a.cfg.SourceID, code)}
	default:
		return fmt.Errorf("%w: %s answered %d", source.ErrInvalidResponse, a.cfg.SourceID, code)
	}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 && s < 86400 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

func (a *Adapter) readBody(resp *http.Response) (any, error) {
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return nil, fmt.Errorf("%w: %s answered content type %q, want application/json", source.ErrInvalidResponse, a.cfg.SourceID, resp.Header.Get("Content-Type"))
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, a.cfg.MaxBody+1))
	if err != nil {
		return nil, &source.RetryableError{Cause: fmt.Errorf("%s: reading the answer: %v", a.cfg.SourceID, err)}
	}
	if int64(len(raw)) > a.cfg.MaxBody {
		return nil, fmt.Errorf("%w: %s answered more than %d bytes", source.ErrInvalidResponse, a.cfg.SourceID, a.cfg.MaxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %s answered malformed JSON", source.ErrInvalidResponse, a.cfg.SourceID)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: %s answered trailing data after the JSON", source.ErrInvalidResponse, a.cfg.SourceID)
	}
	return v, nil
}
