package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/relais-broker/relais/certs"
)

func (f *caFlags) openVault(ctx context.Context, req *certs.ClientRequest) (certs.Authority, func(), error) {
	return nil, nil, errors.New("vault: not wired yet")
}

func runVaultInit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "not wired yet")
	return 1
}

func runIssuerRotate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "not wired yet")
	return 1
}
