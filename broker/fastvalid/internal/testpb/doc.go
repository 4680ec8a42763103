// Package testpb holds test-only messages exercising every rule kind
// fastvalid supports, so the differential tests cover the kinds no data
// message uses yet (int64, unsigned and floating-point bounds, in/not_in,
// const, affixes, byte lengths, unique, ignore…). Regenerate kinds.pb.go
// with gen.sh.
package testpb
