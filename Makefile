# Relais developer tasks. `make test` is the one test command (README, CI).
SHELL := /bin/bash
BIN   := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)

.PHONY: test tools lint generate check-generated vet gotest vault

## test: everything CI checks: proto lint, generated code in step, vet, race tests
test: tools lint check-generated vet gotest

## tools: install the pinned build tools (tools/go.mod) into .bin
tools:
	@cd tools && GOBIN=$(BIN) go install tool

lint:
	buf lint
	@bad=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$bad" ] || { echo "not gofmt-ed: $$bad"; exit 1; }

## generate: regenerate the Go code and docs derived from the proto
generate:
	buf generate
	buf generate --template buf.gen.docs.yaml
	go test ./broker/catalog ./broker/errcat ./adapters/sandbox -run TestDocsInStep -args -update >/dev/null

## check-generated: fail when regeneration would change any committed file
check-generated:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	buf generate -o "$$tmp" && \
	buf generate --template buf.gen.docs.yaml -o "$$tmp" && \
	status=0 && \
	while IFS= read -r f; do \
	  rel=$${f#"$$tmp"/}; \
	  cmp -s "$$f" "$$rel" || { echo "stale generated file: $$rel (run make generate)"; status=1; }; \
	done < <(find "$$tmp" -type f) && \
	for f in $$(git ls-files 'proto/*.pb.go'); do \
	  [ -f "$$tmp/$$f" ] || { echo "generated file without source: $$f"; status=1; }; \
	done && exit $$status

vet:
	go vet ./...

## vault: build (once, cached) the dev Vault server the certificate tests run against
vault:
	@tools/devvault/build.sh >/dev/null

# The Vault suite runs against a real Vault server built from source by
# tools/devvault/build.sh (cached; set VAULT_BIN to use an installed one).
gotest: vault
	VAULT_BIN="$$(tools/devvault/build.sh)" go test -race -count=1 ./...
