package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Environment variables an operator sets once instead of repeating flags.
const (
	envAdminAddr   = "RELAIS_ADMIN_ADDR"
	envOperatorDir = "RELAIS_OPERATOR_DIR"
	envServerName  = "RELAIS_SERVER_NAME"
	envBrokerAddr  = "RELAIS_BROKER_ADDR"
	envContext     = "RELAIS_CONTEXT"
	envConfig      = "RELAIS_CONFIG"
)

// Built-in defaults: those of `relaisd dev`, run from the repository root.
var (
	defaultAdminAddr   = "127.0.0.1:4444"
	defaultOperatorDir = filepath.Join("relais-dev", "dev", "operators", "admin")
	defaultServerName  = "localhost"
	defaultBrokerAddr  = "127.0.0.1:4443"
)

// ctlConfig is the config file: named contexts, one of them current.
type ctlConfig struct {
	CurrentContext string       `yaml:"current-context,omitempty"`
	Contexts       []ctlContext `yaml:"contexts"`
}

// ctlContext names one broker and the operator credential that reaches it.
type ctlContext struct {
	Name        string `yaml:"name"`
	AdminAddr   string `yaml:"admin-addr,omitempty"`
	OperatorDir string `yaml:"operator-dir,omitempty"`
	ServerName  string `yaml:"server-name,omitempty"`
	BrokerAddr  string `yaml:"broker-addr,omitempty"`
}

// configPath is $RELAIS_CONFIG, else relais/config.yaml in the user's
// config directory (~/.config on Linux).
func configPath() (string, error) {
	if p := os.Getenv(envConfig); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config directory (%v): set $%s", err, envConfig)
	}
	return filepath.Join(dir, "relais", "config.yaml"), nil
}

// loadConfig reads the config file strictly; a missing file is an empty
// configuration.
func loadConfig() (*ctlConfig, string, error) {
	path, err := configPath()
	if err != nil {
		return nil, "", err
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &ctlConfig{}, path, nil
	}
	if err != nil {
		return nil, path, err
	}
	var c ctlConfig
	if err := decodeStrict(raw, &c); err != nil {
		return nil, path, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]bool{}
	for i, x := range c.Contexts {
		if x.Name == "" {
			return nil, path, fmt.Errorf("%s: contexts[%d]: name is required", path, i)
		}
		if seen[x.Name] {
			return nil, path, fmt.Errorf("%s: context %q is listed twice", path, x.Name)
		}
		seen[x.Name] = true
	}
	if c.CurrentContext != "" && !seen[c.CurrentContext] {
		return nil, path, fmt.Errorf("%s: current-context %q is not in contexts", path, c.CurrentContext)
	}
	return &c, path, nil
}

func (c *ctlConfig) find(name string) (*ctlContext, bool) {
	for i := range c.Contexts {
		if c.Contexts[i].Name == name {
			return &c.Contexts[i], true
		}
	}
	return nil, false
}

// save writes the file (0600: it names credential directories).
func (c *ctlConfig) save(path string) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// setting is one resolved value and where it came from.
type setting struct {
	Value  string `json:"value"`
	Source string `json:"source"`
}

// connSettings are the resolved connection settings of a command.
type connSettings struct {
	Context     string  `json:"context,omitempty"`
	AdminAddr   setting `json:"admin_addr"`
	OperatorDir setting `json:"operator_dir"`
	ServerName  setting `json:"server_name"`
	BrokerAddr  setting `json:"broker_addr"`
}

// resolveConn resolves each setting: flag > environment > context of the
// config file > built-in default. flags maps a setting to its flag (nil
// or unchanged: not given); ctxName is --context ("" for $RELAIS_CONTEXT,
// then the file's current-context).
func resolveConn(fs *pflag.FlagSet, ctxName string) (connSettings, error) {
	var s connSettings
	var cur *ctlContext
	if ctxName == "" {
		ctxName = os.Getenv(envContext)
	}
	cfg, path, err := loadConfig()
	if err != nil {
		return s, err
	}
	if ctxName == "" {
		ctxName = cfg.CurrentContext
	}
	if ctxName != "" {
		c, ok := cfg.find(ctxName)
		if !ok {
			return s, fmt.Errorf("no context %q in %s (relaisctl context list)", ctxName, path)
		}
		cur, s.Context = c, ctxName
	}
	pick := func(flagName, env, fromFile, def string) setting {
		if fs != nil {
			if f := fs.Lookup(flagName); f != nil && f.Changed {
				return setting{f.Value.String(), "flag --" + flagName}
			}
		}
		if v := os.Getenv(env); v != "" {
			return setting{v, "env $" + env}
		}
		if fromFile != "" {
			return setting{fromFile, "context " + ctxName}
		}
		return setting{def, "default"}
	}
	var file ctlContext
	if cur != nil {
		file = *cur
	}
	s.AdminAddr = pick("admin-addr", envAdminAddr, file.AdminAddr, defaultAdminAddr)
	s.OperatorDir = pick("operator-dir", envOperatorDir, file.OperatorDir, defaultOperatorDir)
	s.ServerName = pick("server-name", envServerName, file.ServerName, defaultServerName)
	s.BrokerAddr = pick("broker", envBrokerAddr, file.BrokerAddr, defaultBrokerAddr)
	return s, nil
}

func contextCmd() *cobra.Command {
	cmd := group("context", "Name brokers once: contexts of the config file ($RELAIS_CONFIG or ~/.config/relais/config.yaml)",
		contextSetCmd(), contextUseCmd(), contextListCmd(), contextShowCmd())
	cmd.Long = `A context names a broker (its admin API address, its data API address,
the name its certificate carries) and the operator credential directory
that reaches it. Every admin command resolves each setting in this order:
its flag, then the environment ($RELAIS_ADMIN_ADDR, $RELAIS_OPERATOR_DIR,
$RELAIS_SERVER_NAME, $RELAIS_BROKER_ADDR), then the context (--context,
$RELAIS_CONTEXT, else current-context of the file), then the dev defaults.`
	return cmd
}

func contextSetCmd() *cobra.Command {
	return leaf("set NAME [--admin-addr A] [--operator-dir D] [--server-name N] [--broker B]", "Create or change a context (the first one becomes current)",
		"  relaisctl context set prod --admin-addr relais.example.fr:4444 --operator-dir ~/relais/operator --server-name relais.example.fr", func(fs *pflag.FlagSet) body {
			var c ctlContext
			fs.StringVar(&c.AdminAddr, "admin-addr", "", "address of the broker's admin API")
			fs.StringVar(&c.OperatorDir, "operator-dir", "", "the operator's credential directory (cert.pem, key.pem, ca.pem)")
			fs.StringVar(&c.ServerName, "server-name", "", "name the broker's certificate must carry")
			fs.StringVar(&c.BrokerAddr, "broker", "", "address of the broker's data API (credentials renew)")
			return func(_ context.Context, stdout, stderr io.Writer) int {
				if fs.NArg() != 1 {
					fmt.Fprintln(stderr, "relaisctl context set: give one context NAME")
					return 2
				}
				cfg, path, err := loadConfig()
				if err != nil {
					fmt.Fprintf(stderr, "relaisctl context set: %v\n", err)
					return 1
				}
				name := fs.Arg(0)
				if c.OperatorDir != "" {
					if abs, err := filepath.Abs(c.OperatorDir); err == nil {
						c.OperatorDir = abs
					}
				}
				cur, ok := cfg.find(name)
				if !ok {
					cfg.Contexts = append(cfg.Contexts, ctlContext{Name: name})
					cur = &cfg.Contexts[len(cfg.Contexts)-1]
				}
				fs.Visit(func(f *pflag.Flag) {
					switch f.Name {
					case "admin-addr":
						cur.AdminAddr = c.AdminAddr
					case "operator-dir":
						cur.OperatorDir = c.OperatorDir
					case "server-name":
						cur.ServerName = c.ServerName
					case "broker":
						cur.BrokerAddr = c.BrokerAddr
					}
				})
				if cfg.CurrentContext == "" {
					cfg.CurrentContext = name
				}
				if err := cfg.save(path); err != nil {
					fmt.Fprintf(stderr, "relaisctl context set: %v\n", err)
					return 1
				}
				verb := "changed"
				if !ok {
					verb = "created"
				}
				fmt.Fprintf(stdout, "context %q %s in %s\n", name, verb, path)
				return 0
			}
		})
}

func contextUseCmd() *cobra.Command {
	return leaf("use NAME", "Make a context the current one", "  relaisctl context use prod", func(fs *pflag.FlagSet) body {
		return func(_ context.Context, stdout, stderr io.Writer) int {
			if fs.NArg() != 1 {
				fmt.Fprintln(stderr, "relaisctl context use: give one context NAME")
				return 2
			}
			cfg, path, err := loadConfig()
			if err != nil {
				fmt.Fprintf(stderr, "relaisctl context use: %v\n", err)
				return 1
			}
			if _, ok := cfg.find(fs.Arg(0)); !ok {
				var names []string
				for _, c := range cfg.Contexts {
					names = append(names, c.Name)
				}
				fmt.Fprintf(stderr, "relaisctl context use: no context %q in %s (have %v; relaisctl context set creates one)\n", fs.Arg(0), path, names)
				return 1
			}
			cfg.CurrentContext = fs.Arg(0)
			if err := cfg.save(path); err != nil {
				fmt.Fprintf(stderr, "relaisctl context use: %v\n", err)
				return 1
			}
			fmt.Fprintf(stdout, "current context is now %q\n", fs.Arg(0))
			return 0
		}
	})
}

func contextListCmd() *cobra.Command {
	return leaf("list", "List the contexts of the config file", "  relaisctl context list\n  relaisctl context list -o json", func(fs *pflag.FlagSet) body {
		out := addOutputFlag(fs)
		return func(_ context.Context, stdout, stderr io.Writer) int {
			if fs.NArg() > 0 {
				fmt.Fprintf(stderr, "relaisctl context list: unexpected argument %q\n", fs.Arg(0))
				return 2
			}
			cfg, _, err := loadConfig()
			if err != nil {
				fmt.Fprintf(stderr, "relaisctl context list: %v\n", err)
				return 1
			}
			v := view{whole: cfg, cols: []column{{name: "CURRENT"}, {name: "NAME", max: 20}, {name: "ADMIN ADDR", max: 30}, {name: "SERVER NAME", max: 24}, {name: "OPERATOR DIR", max: 34}, {name: "BROKER", wide: true}}}
			for _, c := range cfg.Contexts {
				mark := ""
				if c.Name == cfg.CurrentContext {
					mark = "*"
				}
				v.items = append(v.items, c)
				v.rows = append(v.rows, []string{mark, c.Name, c.AdminAddr, c.ServerName, c.OperatorDir, c.BrokerAddr})
			}
			return printed(stderr, "context list", render(stdout, out.v, v))
		}
	})
}

func contextShowCmd() *cobra.Command {
	return leaf("show [NAME]", "Show the settings a command would use, and where each comes from",
		"  relaisctl context show\n  RELAIS_ADMIN_ADDR=10.0.0.5:4444 relaisctl context show prod -o json", func(fs *pflag.FlagSet) body {
			out := addOutputFlag(fs, outTable, outJSON)
			return func(_ context.Context, stdout, stderr io.Writer) int {
				if fs.NArg() > 1 {
					fmt.Fprintln(stderr, "relaisctl context show: give at most one context NAME")
					return 2
				}
				s, err := resolveConn(nil, fs.Arg(0))
				if err != nil {
					fmt.Fprintf(stderr, "relaisctl context show: %v\n", err)
					return 1
				}
				if out.v == outJSON {
					return printed(stderr, "context show", writeIndented(stdout, s))
				}
				v := view{cols: []column{{name: "SETTING"}, {name: "VALUE", max: 60}, {name: "FROM", max: 30}}}
				name := s.Context
				if name == "" {
					name = "(none)"
				}
				v.rows = [][]string{{"context", name, ""}, {"admin-addr", s.AdminAddr.Value, s.AdminAddr.Source},
					{"operator-dir", s.OperatorDir.Value, s.OperatorDir.Source}, {"server-name", s.ServerName.Value, s.ServerName.Source},
					{"broker", s.BrokerAddr.Value, s.BrokerAddr.Source}}
				return printed(stderr, "context show", render(stdout, outTable, v))
			}
		})
}

// contextNames completes --context values.
func contextNames(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	cfg, _, err := loadConfig()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, c := range cfg.Contexts {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	return names, cobra.ShellCompDirectiveNoFileComp
}
