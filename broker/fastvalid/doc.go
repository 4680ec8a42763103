// Package fastvalid validates the data API's requests and responses with
// plain Go checks generated from their protovalidate annotations, so the
// broker's hot path runs no CEL. The rules stay declared once, in the
// proto: internal/gen reads the compiled descriptors and writes
// rules_gen.go; the CEL rules the protos use (SIRET, dates, the birth place
// rule) are bound by id and expression hash to hand-written functions in
// cel.go, and the generator fails on any rule or annotation it does not
// know. Violations carry protovalidate's field path, rule path, rule id and
// message, and in the same order, which the differential and fuzz tests
// prove against protovalidate itself. Messages without generated checks
// (the admin API…) and calls with validation options go to a wrapped
// protovalidate validator, so New is a drop-in replacement.
package fastvalid

//go:generate go run ./internal/gen -o rules_gen.go
//go:generate go run ./internal/gen -test -o rules_testkinds_gen_test.go
