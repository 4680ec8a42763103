#!/usr/bin/env bash
# Generates the Python stubs of every file in a Relais proto bundle with
# Debian's protoc (protobuf-compiler, 3.21: proto3 `optional` is supported
# since 3.15 without a flag) and grpc_python_plugin (protobuf-compiler-grpc).
# Nothing but the bundle is read: the well-known types and google/rpc are in it.
#
#   curl --cacert ca.pem --cert cert.pem --key key.pem -O https://BROKER/docs/proto.tar.gz
#   tar xzf proto.tar.gz            # → relais-proto/
#   ./generate.sh relais-proto /tmp/relais-stubs
set -euo pipefail
bundle=${1:?usage: generate.sh BUNDLE_DIR OUT_DIR}
out=${2:?usage: generate.sh BUNDLE_DIR OUT_DIR}
plugin=$(command -v grpc_python_plugin) || { echo "grpc_python_plugin not found (Debian: protobuf-compiler-grpc)" >&2; exit 1; }
mkdir -p "$out"
# The well-known types come with the protobuf runtime: compile the rest.
mapfile -t protos < <(cd "$bundle" && find . -name '*.proto' ! -path './google/protobuf/*' | sed 's|^\./||' | LC_ALL=C sort)
protoc -I "$bundle" --python_out="$out" --grpc_out="$out" --plugin=protoc-gen-grpc="$plugin" "${protos[@]}"
echo "generated ${#protos[@]} files into $out"
