package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/relais-broker/relais/adapters/sources"
	"github.com/relais-broker/relais/broker/anomaly"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/internal/keyfile"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/tracing"
)

// Config is relaisd's configuration file (YAML), decoded strictly: an
// unknown key is an error that names it and its line. Secrets are never
// in the file: it names files, and the environment may override them
// (RELAIS_VAULT_SECRET_ID, RELAIS_PSEUDONYM_KEY).
type Config struct {
	// DataDir holds registry.db and audit/ (the audit log directory) when
	// the store is bbolt.
	DataDir string       `yaml:"data_dir"`
	Store   StoreConfig  `yaml:"store"`
	Listen  ListenConfig `yaml:"listen"`
	TLS     TLSConfig    `yaml:"tls"`
	Audit   AuditConfig  `yaml:"audit"`
	// SourcesFile chooses each service's adapter (adapters/sources);
	// reloaded on SIGHUP. Services it omits answer service_not_configured.
	SourcesFile string         `yaml:"sources_file"`
	Log         LogConfig      `yaml:"log"`
	Tracing     tracing.Config `yaml:"tracing"`
	Limits      LimitsConfig   `yaml:"limits"`
	// Anomaly tunes the detection of abnormal use (broker/anomaly): the
	// defaults when omitted.
	Anomaly anomaly.Config `yaml:"anomaly"`
	// ReplicaID names this broker among the replicas sharing one database:
	// its audit chain. Default: the host name (store kind postgres), or
	// empty (bbolt: one broker, one chain).
	ReplicaID string `yaml:"replica_id"`
	// DrainPeriod: on SIGTERM, /readyz turns not ready at once and the
	// broker keeps serving this long before it stops accepting calls, so a
	// load balancer health-checking /readyz stops routing to it first.
	// Default 5s with store kind postgres (replicas behind a balancer), 0
	// with bbolt.
	DrainPeriod *time.Duration `yaml:"drain_period"`
	// Reminders mails the consumers' contacts before their certificates
	// and grants end (off when omitted).
	Reminders RemindersConfig `yaml:"reminders"`
	// ExpectedReplicas is how many replicas this deployment runs, for the
	// "replicas missing" alert (0: not alerted on).
	ExpectedReplicas int `yaml:"expected_replicas"`
	// CitizenLogin configures the identity providers of citizen-initiated
	// calls (off when omitted).
	CitizenLogin CitizenLoginConfig `yaml:"citizen_login"`
	// Portal configures the transparency portal served on listen.portal.
	Portal PortalConfig `yaml:"portal"`
}

// StoreConfig chooses where the broker's state lives: bbolt files in
// data_dir (one machine, the default) or one PostgreSQL database shared by
// every replica.
type StoreConfig struct {
	// Kind is bbolt (default) or postgres.
	Kind string `yaml:"kind"`
	// DSNFile holds the PostgreSQL connection string (libpq URL or
	// key=value form), so the password is never in this file; the
	// environment variable RELAIS_DATABASE_DSN overrides it.
	DSNFile string `yaml:"dsn_file"`
}

// Store kinds.
const (
	StoreBbolt    = "bbolt"
	StorePostgres = "postgres"
)

// dsn is RELAIS_DATABASE_DSN when set, else the content of dsn_file. It
// is never logged nor put in an error.
func (s StoreConfig) dsn() (string, error) {
	if v := strings.TrimSpace(os.Getenv(pgdb.DSNEnv)); v != "" || s.DSNFile == "" {
		dsn, err := pgdb.LoadDSN("")
		if err != nil {
			return "", fmt.Errorf("store.dsn_file is required for kind postgres (or set %s)", pgdb.DSNEnv)
		}
		return dsn, nil
	}
	dsn, err := pgdb.LoadDSN(s.DSNFile)
	if err != nil {
		return "", fmt.Errorf("store.dsn_file: %w", err)
	}
	return dsn, nil
}

// LimitsConfig tunes the protections of the data API.
type LimitsConfig struct {
	// AllowDuplicateCalls stops refusing an identical call already in
	// flight (duplicate_in_flight). For load tests that repeat one
	// subject only; keep false in production.
	AllowDuplicateCalls bool `yaml:"allow_duplicate_calls"`
}

// ListenConfig are the three listeners.
type ListenConfig struct {
	Data  string `yaml:"data"`  // mTLS data API (consumers)
	Admin string `yaml:"admin"` // mTLS admin API (operators)
	Ops   string `yaml:"ops"`   // HTTP /metrics /healthz /readyz
	HTTP  string `yaml:"http"`  // mTLS HTTPS/JSON gateway and API documentation
	// Portal is the citizens' transparency portal (HTTPS, no client
	// certificate: citizens log in with OpenID Connect); off when empty.
	Portal string `yaml:"portal"`
}

// TLSConfig says where certificates come from.
type TLSConfig struct {
	// ServerNames and ServerIPs are what the broker's certificate covers.
	ServerNames []string      `yaml:"server_names"`
	ServerIPs   []string      `yaml:"server_ips"`
	ServerTTL   time.Duration `yaml:"server_ttl"`
	// CRLRefresh and TrustRefresh: how often revocations and the trust
	// bundle are reloaded from the CA (30 s and 5 min when zero).
	CRLRefresh   time.Duration `yaml:"crl_refresh"`
	TrustRefresh time.Duration `yaml:"trust_refresh"`
	// Vault is the production CA; DevCADir an embedded dev CA (tests and
	// evaluation only). Exactly one.
	Vault    *VaultConfig `yaml:"vault"`
	DevCADir string       `yaml:"dev_ca_dir"`
}

// VaultConfig is how the broker reaches Vault: AppRole, never a root token.
type VaultConfig struct {
	Addr         string `yaml:"addr"`
	CAFile       string `yaml:"ca_file"`
	Mount        string `yaml:"mount"`
	RootMount    string `yaml:"root_mount"`
	RoleID       string `yaml:"role_id"`
	SecretIDFile string `yaml:"secret_id_file"`
}

// AuditConfig names the audit keys and the retention.
type AuditConfig struct {
	SigningKeyFile   string        `yaml:"signing_key_file"`
	PseudonymKeyFile string        `yaml:"pseudonym_key_file"`
	Retention        time.Duration `yaml:"retention"`
	// SigningKeyVault and PseudonymKeyVault keep the keys in Vault instead
	// of files (tls.vault required; set up by relaisctl vault init
	// --audit-keys): the private signing key never sits on a replica's
	// disk, and every replica reads the same pseudonym key.
	SigningKeyVault   *VaultTransitKey `yaml:"signing_key_vault"`
	PseudonymKeyVault *VaultKVSecret   `yaml:"pseudonym_key_vault"`
}

// VaultTransitKey names a transit key (Ed25519) that signs checkpoints.
type VaultTransitKey struct {
	Mount string `yaml:"mount"`
	Key   string `yaml:"key"`
}

// VaultKVSecret names a KV v2 secret holding the pseudonym key (hex).
type VaultKVSecret struct {
	Mount string `yaml:"mount"`
	Path  string `yaml:"path"`
}

// LogConfig chooses the log format.
type LogConfig struct {
	Format string `yaml:"format"` // json (default) or text
}

// loadConfig reads, decodes strictly, applies defaults and validates.
func loadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.defaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

func (c *Config) defaults() {
	if c.Listen.Data == "" {
		c.Listen.Data = "0.0.0.0:4443"
	}
	if c.Listen.Admin == "" {
		c.Listen.Admin = "127.0.0.1:4444"
	}
	if c.Listen.Ops == "" {
		c.Listen.Ops = "127.0.0.1:9090"
	}
	if c.Listen.HTTP == "" {
		c.Listen.HTTP = "0.0.0.0:8443"
	}
	if c.TLS.ServerTTL == 0 {
		c.TLS.ServerTTL = 30 * 24 * time.Hour
	}
	if c.TLS.CRLRefresh == 0 {
		c.TLS.CRLRefresh = 30 * time.Second
	}
	if c.TLS.TrustRefresh == 0 {
		c.TLS.TrustRefresh = 5 * time.Minute
	}
	if c.Audit.Retention == 0 {
		c.Audit.Retention = 365 * 24 * time.Hour
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Store.Kind == "" {
		c.Store.Kind = StoreBbolt
	}
	if c.ReplicaID == "" && c.Store.Kind == StorePostgres {
		c.ReplicaID, _ = os.Hostname()
	}
	if c.DrainPeriod == nil {
		d := time.Duration(0)
		if c.Store.Kind == StorePostgres {
			d = 5 * time.Second
		}
		c.DrainPeriod = &d
	}
}

// validate checks everything that can be checked without connecting:
// addresses, files, keys, the sources file. It does not reach Vault.
func (c *Config) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Store.Kind {
	case StoreBbolt:
		if c.DataDir == "" {
			add("data_dir is required with store kind bbolt")
		} else if st, err := os.Stat(c.DataDir); err != nil || !st.IsDir() {
			add("data_dir %s: not a directory", c.DataDir)
		}
	case StorePostgres:
		if _, err := c.Store.dsn(); err != nil {
			add("%v", err)
		}
	default:
		add("store.kind %q: want bbolt or postgres", c.Store.Kind)
	}
	for name, addr := range map[string]string{"listen.data": c.Listen.Data, "listen.admin": c.Listen.Admin, "listen.ops": c.Listen.Ops, "listen.http": c.Listen.HTTP} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add("%s %q: %v", name, addr, err)
		}
	}
	if len(c.TLS.ServerNames) == 0 && len(c.TLS.ServerIPs) == 0 {
		add("tls.server_names or tls.server_ips is required")
	}
	for _, ip := range c.TLS.ServerIPs {
		if net.ParseIP(ip) == nil {
			add("tls.server_ips: %q is not an IP address", ip)
		}
	}
	switch v := c.TLS.Vault; {
	case v != nil && c.TLS.DevCADir != "":
		add("tls: give vault or dev_ca_dir, not both")
	case v == nil && c.TLS.DevCADir == "":
		add("tls: vault (production) or dev_ca_dir is required")
	case v != nil:
		if v.Addr == "" || v.RoleID == "" {
			add("tls.vault: addr and role_id are required (the broker logs in with AppRole)")
		}
		if os.Getenv("RELAIS_VAULT_SECRET_ID") == "" {
			if _, err := os.ReadFile(v.SecretIDFile); err != nil {
				add("tls.vault.secret_id_file: %v (or set RELAIS_VAULT_SECRET_ID)", err)
			}
		}
	}
	if e := c.Tracing.Exporter; e != "" && e != "none" && !(e == "otlp" && c.Tracing.Endpoint != "") {
		add("tracing: exporter %q: want none, or otlp with an endpoint", e)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		add("log.format %q: want json or text", c.Log.Format)
	}
	switch a := c.Audit; {
	case a.SigningKeyVault != nil && a.SigningKeyFile != "":
		add("audit: give signing_key_file or signing_key_vault, not both")
	case a.SigningKeyVault != nil:
		if c.TLS.Vault == nil {
			add("audit.signing_key_vault needs tls.vault (the broker reads it with its AppRole)")
		}
		if a.SigningKeyVault.Mount == "" || a.SigningKeyVault.Key == "" {
			add("audit.signing_key_vault: mount and key are required")
		}
	default:
		if _, err := keyfile.ReadSigningKey(a.SigningKeyFile); err != nil {
			add("audit.signing_key_file: %v", err)
		}
	}
	switch a := c.Audit; {
	case a.PseudonymKeyVault != nil && (a.PseudonymKeyFile != "" || os.Getenv("RELAIS_PSEUDONYM_KEY") != ""):
		add("audit: give pseudonym_key_file (or RELAIS_PSEUDONYM_KEY) or pseudonym_key_vault, not both")
	case a.PseudonymKeyVault != nil:
		if c.TLS.Vault == nil {
			add("audit.pseudonym_key_vault needs tls.vault (the broker reads it with its AppRole)")
		}
		if a.PseudonymKeyVault.Mount == "" || a.PseudonymKeyVault.Path == "" {
			add("audit.pseudonym_key_vault: mount and path are required")
		}
	default:
		if _, err := c.pseudonymKey(); err != nil {
			add("audit.pseudonym_key_file: %v", err)
		}
	}
	if c.Audit.Retention < 24*time.Hour {
		add("audit.retention %s: at least a day (the CNIL range is 6 to 12 months)", c.Audit.Retention)
	}
	if err := c.Portal.validate(c.Listen.Portal); err != nil {
		errs = append(errs, err)
	}
	if err := c.CitizenLogin.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Reminders.validate(); err != nil {
		add("%v", err)
	}
	if c.ExpectedReplicas < 0 {
		add("expected_replicas %d: 0 or more", c.ExpectedReplicas)
	}
	if err := c.Anomaly.Validate(); err != nil {
		add("anomaly: %v", err)
	}
	if *c.DrainPeriod < 0 || *c.DrainPeriod > time.Minute {
		add("drain_period %s: between 0 and 1m", *c.DrainPeriod)
	}
	if !validReplicaID(c.ReplicaID) {
		add("replica_id %q: 1 to 64 letters, digits, '.', '_' or '-'", c.ReplicaID)
	}
	if c.SourcesFile != "" {
		if _, err := sources.Load(c.SourcesFile, catalog.Default(), nil); err != nil {
			add("sources_file: %v", err)
		}
	}
	return errors.Join(errs...)
}

// pseudonymKey is RELAIS_PSEUDONYM_KEY (hex) when set, else the file.
func (c *Config) pseudonymKey() ([]byte, error) {
	if v := os.Getenv("RELAIS_PSEUDONYM_KEY"); v != "" {
		return keyfile.ParsePseudonymKey(v)
	}
	return keyfile.ReadPseudonymKey(c.Audit.PseudonymKeyFile)
}

// secretID is RELAIS_VAULT_SECRET_ID when set, else the file.
func (v *VaultConfig) secretID() (string, error) {
	if s := os.Getenv("RELAIS_VAULT_SECRET_ID"); s != "" {
		return s, nil
	}
	raw, err := os.ReadFile(v.SecretIDFile)
	return strings.TrimSpace(string(raw)), err
}

// validReplicaID: a replica id names an audit chain in records, exports
// and metrics; empty is the single chain of a bbolt broker.
func validReplicaID(id string) bool {
	if len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
