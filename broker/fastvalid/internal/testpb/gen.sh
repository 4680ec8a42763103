#!/usr/bin/env bash
# gen.sh regenerates kinds.pb.go, the test-only messages of the fastvalid
# differential tests, with the repository's pinned buf and protoc-gen-go
# (make tools). It compiles kinds.proto next to a copy of
# third_party/protovalidate in a temporary buf module, outside the
# repository's buf workspace (which holds the public API only). An
# argument writes the file there instead (make check-generated).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/relais/fastvalidtest/v1"
cp -r "$root/third_party/protovalidate/buf" "$tmp/src/"
cp "$here/kinds.proto" "$tmp/src/relais/fastvalidtest/v1/"
printf 'version: v2\nmodules:\n  - path: src\n' > "$tmp/buf.yaml"
printf 'version: v2\nplugins:\n  - local: ["%s"]\n    out: out\n    opt: paths=source_relative\n' "$root/.bin/protoc-gen-go" > "$tmp/buf.gen.yaml"
(cd "$tmp" && "$root/.bin/buf" generate --template buf.gen.yaml --path src/relais/fastvalidtest)
cp "$tmp/out/relais/fastvalidtest/v1/kinds.pb.go" "${1:-$here/kinds.pb.go}"
