// Command relaisd is the Relais broker. `relaisd dev` runs it on its
// embedded defaults (dev CA, sandbox sources, demo grants) for a first
// look; see the README.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: relaisd <command> [flags]

commands:
  dev           run the broker on embedded defaults: dev CA, sandbox sources, demo consumers
  serve         run the broker from a configuration file (--config /etc/relais/relaisd.yaml)
  check-config  validate a configuration file without starting (--config FILE)
  version       print the version

Run 'relaisd <command> -h' for the flags of a command.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "check-config":
		return runCheckConfig(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "relaisd", version)
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "relaisd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
