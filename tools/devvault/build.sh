#!/usr/bin/env bash
# Prints the path of a Vault server binary for development and tests.
#
# No prebuilt Vault can be downloaded on the machines Relais is built on,
# so this builds the upstream Vault v1.19.0 CLI from source (tools/devvault,
# `go build -tags minimal`, about 10 to 20 minutes cold) and caches it under
# ${XDG_CACHE_HOME:-~/.cache}/relais/, keyed by a hash of the module files:
# later runs print the cached path at once. When VAULT_BIN names an
# executable, that binary is used instead and nothing is built.
#
# Only the path goes to stdout; progress goes to stderr.
set -euo pipefail

if [[ -n "${VAULT_BIN:-}" ]]; then
  if [[ -x "$VAULT_BIN" ]]; then
    echo "$VAULT_BIN"
    exit 0
  fi
  echo "build.sh: VAULT_BIN=$VAULT_BIN is not an executable file" >&2
  exit 1
fi

src="$(cd "$(dirname "$0")" && pwd)"
hash="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/relais"
bin="$cache/vault-$hash"

if [[ ! -x "$bin" ]]; then
  mkdir -p "$cache"
  echo "build.sh: building Vault from source into $bin (first time only; takes a while)" >&2
  tmp="$bin.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  (cd "$src" && go build -tags minimal -trimpath -o "$tmp" .)
  mv "$tmp" "$bin"
fi
echo "$bin"
