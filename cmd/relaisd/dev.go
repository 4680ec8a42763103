package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/devenv"
)

// drainTimeout bounds the graceful stop of in-flight calls.
const drainTimeout = 10 * time.Second

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisd dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:4443", "address of the mTLS data API")
	dataDir := fs.String("data-dir", "relais-dev", "directory for the dev CA, demo credentials and stores")
	logFormat := fs.String("log-format", "json", "log format: json or text")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relaisd dev: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	logger, err := newLogger(*logFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "relaisd dev: %v\n", err)
		return 2
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		fmt.Fprintf(stderr, "relaisd dev: --listen %q: %v\n", *listen, err)
		return 2
	}
	if err := serveDev(ctx, *listen, host, *dataDir, logger, stdout); err != nil {
		fmt.Fprintf(stderr, "relaisd dev: %v\n", err)
		return 1
	}
	return 0
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	default:
		return nil, fmt.Errorf("--log-format must be json or text, not %q", format)
	}
}

func serveDev(ctx context.Context, listen, host, dataDir string, logger *slog.Logger, stdout io.Writer) error {
	cat := catalog.Default()
	env, err := devenv.Prepare(ctx, dataDir, []string{host}, cat, time.Now)
	if err != nil {
		return err
	}
	b, err := broker.New(broker.Config{
		Catalog:  cat,
		Sources:  env.Sources,
		Registry: env.Registry,
		// PLACEHOLDER until the bbolt audit log lands: records live in memory.
		Audit:  &audit.Memory{},
		Logger: logger,
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv, _ := b.NewGRPCServer(grpc.Creds(credentials.NewTLS(certs.ServerConfig(env.ServerCert, env.Trust))))
	printWelcome(stdout, lis.Addr().String(), dataDir, env)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: draining in-flight calls")
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(drainTimeout):
		srv.Stop()
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

func printWelcome(w io.Writer, addr, dataDir string, env *devenv.Env) {
	full := env.ConsumerDir(devenv.FullConsumer)
	limited := env.ConsumerDir(devenv.LimitedConsumer)
	fmt.Fprintf(w, "relaisd dev: listening on %s (mTLS only; sandbox sources, fictitious data)\n", addr)
	fmt.Fprintf(w, "data directory: %s\n", dataDir)
	fmt.Fprintf(w, "trust bundle:   %s\n", filepath.Join(env.Dir, "ca.pem"))
	fmt.Fprintf(w, "demo consumers:\n")
	fmt.Fprintf(w, "  %-16s SIRET %s, every scope:    %s\n", devenv.FullConsumer.Dir, devenv.FullConsumer.SIRET, full)
	fmt.Fprintf(w, "  %-16s SIRET %s, limited scopes: %s\n", devenv.LimitedConsumer.Dir, devenv.LimitedConsumer.SIRET, limited)
	fmt.Fprintf(w, "first call:\n  %s\n", devenv.FirstCallCommand(env, devenv.FullConsumer, addr))
}
