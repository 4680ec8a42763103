package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// limitServer is the physical reference: a bare grpc-go server answering
// the family-quotient call from memory, with no checks, over the same
// mTLS. With --delay it stands for a source that takes that long.
type limitServer struct {
	familyquotientv1.UnimplementedFamilyQuotientServiceServer
	delay time.Duration
	resp  *familyquotientv1.GetFamilyQuotientResponse
}

func (s *limitServer) GetFamilyQuotient(ctx context.Context, _ *familyquotientv1.GetFamilyQuotientRequest) (*familyquotientv1.GetFamilyQuotientResponse, error) {
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	out := proto.Clone(s.resp).(*familyquotientv1.GetFamilyQuotientResponse)
	out.Source.ProducedAt = timestamppb.Now()
	return out, nil
}

// sampleResponse has the shape of the sandbox's answer for Zoé Dupont.
func sampleResponse() *familyquotientv1.GetFamilyQuotientResponse {
	p := func(name, given, date string, sex commonv1.Sex) *commonv1.Person {
		return &commonv1.Person{BirthName: name, GivenNames: []string{given}, BirthDate: date, Sex: sex}
	}
	return &familyquotientv1.GetFamilyQuotientResponse{
		Source: &commonv1.SourceMetadata{SourceId: "limit", Provider: "bench (fictitious data)", ProducedAt: timestamppb.Now(), ValidUntil: timestamppb.New(time.Now().Add(24 * time.Hour))},
		Value:  proto.Int32(755), ReferenceYear: proto.Int32(2026), ReferenceMonth: proto.Int32(10), Regime: familyquotientv1.Regime_REGIME_CNAF,
		Beneficiaries: []*commonv1.Person{p("DUPONT", "Zoé", "1984-03-12", commonv1.Sex_SEX_FEMALE), p("ROBERT", "Karim", "1982-07-30", commonv1.Sex_SEX_MALE)},
		Children:      []*commonv1.Person{p("ROBERT", "Inès", "2014-05-21", commonv1.Sex_SEX_FEMALE), p("ROBERT", "Sacha", "2018-11-02", commonv1.Sex_SEX_MALE)},
		Address:       &commonv1.PostalAddress{RecipientLine: "MADAME ZOÉ DUPONT", StreetLine: "12 RUE DES LILAS", PostalCode: "75019", City: "PARIS", Country: "FRANCE"},
	}
}

// runLimitServer is the `limit-server` subcommand, run as its own process.
func runLimitServer(args []string) error {
	fs := flag.NewFlagSet("limit-server", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	cert := fs.String("cert", "", "server certificate")
	key := fs.String("key", "", "server key")
	ca := fs.String("ca", "", "client CA")
	delay := fs.Duration("delay", 0, "answer after this delay (a slow source)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(*ca)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	familyquotientv1.RegisterFamilyQuotientServiceServer(srv, &limitServer{delay: *delay, resp: sampleResponse()})
	fmt.Println(lis.Addr().String())
	return srv.Serve(lis)
}
