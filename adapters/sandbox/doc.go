// Package sandbox is the source adapter behind Relais's sandbox: a fixed
// population of fictitious citizens, embedded in the binary, that answers
// every typed service the way a real source administration would — found,
// partially known, not found, not identifiable (homonyms), unavailable,
// timing out or answering garbage — so that consumers can integrate
// without ever touching real personal data (CNIL 2023-050: a sandbox with
// fictitious data).
//
// The data set (citizens.yaml) is decoded strictly: an unknown key, a
// record that does not fit its response type or a duplicate identifier is
// an error naming the citizen. Records are written in the proto JSON form
// of each service's response and keyed by the service's scope prefix
// (family_quotient, student_status…), so a new typed service needs data,
// not code. docs/sandbox.md lists the citizens; it is generated from the
// data set and checked in step by the tests.
package sandbox
