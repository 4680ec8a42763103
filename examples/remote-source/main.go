// Command remote-source is a tiny example of a source administration's
// own gRPC server for Relais's `remote` adapter: it implements the typed
// FamilyQuotientService from fictitious data, over mTLS (it accepts only
// clients whose certificate chains to --client-ca, the broker's). Read
// source.go: that is the part a source team writes. See
// docs/writing-an-adapter.md.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5443", "address to serve on")
	certFile := flag.String("cert", "", "this server's certificate (PEM)")
	keyFile := flag.String("key", "", "this server's key (PEM)")
	clientCA := flag.String("client-ca", "", "CA bundle the broker's client certificate must chain to")
	flag.Parse()
	cfg, err := serverTLS(*certFile, *keyFile, *clientCA)
	if err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := newServer(cfg)
	fmt.Printf("remote-source: FamilyQuotientService on %s (mTLS)\n", lis.Addr())
	log.Fatal(srv.Serve(lis))
}

func newServer(cfg *tls.Config) *grpc.Server {
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	familyquotientv1.RegisterFamilyQuotientServiceServer(srv, newFamilyQuotientSource())
	return srv
}

func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--cert/--key: %w", err)
	}
	caPEM, err := os.ReadFile(clientCA)
	if err != nil {
		return nil, fmt.Errorf("--client-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--client-ca %s holds no certificate", clientCA)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, nil
}
