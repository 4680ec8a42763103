// Package tools pins the versions of the build and test tools Relais uses
// (buf, the protoc plugins, grpcurl) through go.mod tool directives, so that
// `go install tool` in this directory installs exactly those versions from
// the Go module proxy. It holds no code of its own.
package tools
