# Relais developer tasks. `make test` is the one test command (README, CI).
SHELL := /bin/bash
BIN   := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)

.PHONY: test tools lint generate check-generated vet gotest vault bundle

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
	broker/fastvalid/internal/testpb/gen.sh
	go generate ./broker/fastvalid
	go test ./broker/catalog ./broker/errcat ./adapters/sandbox -run TestDocsInStep -args -update >/dev/null
	$(MAKE) --no-print-directory bundle

## bundle: rebuild docs/proto, the consumers' proto bundle (docs/clients.md)
bundle:
	@rm -rf docs/proto && $(MAKE) --no-print-directory bundle-into BUNDLE_OUT=docs/proto

# bundle-into writes the bundle into $(BUNDLE_OUT): every public service of
# the tree and its imports as buf exports them (all but the operators'
# admin API), the google/rpc error protos printed from the descriptors the
# broker encodes its errors with (go.mod), and the well-known types these
# import, in the version buf compiles against (tools/go.mod).
bundle-into:
	@[ -n "$(BUNDLE_OUT)" ] || { echo "bundle-into: BUNDLE_OUT is required"; exit 2; }
	buf export . --exclude-path proto/relais/admin -o "$(BUNDLE_OUT)"
	go run ./docs/internal/rpcproto -o "$(BUNDLE_OUT)"
	@wkt=$$(cd tools && go list -m -f '{{.Dir}}' github.com/bufbuild/protocompile)/wellknownimports && \
	mkdir -p "$(BUNDLE_OUT)/google/protobuf" && \
	for pass in 1 2 3; do \
	  for f in $$(grep -rhoE '^import "google/protobuf/[a-z_]+\.proto"' "$(BUNDLE_OUT)" | cut -d'"' -f2 | LC_ALL=C sort -u); do \
	    install -m 0644 "$$wkt/$$f" "$(BUNDLE_OUT)/$$f" || exit 1; \
	  done; \
	done

## check-generated: fail when regeneration would change any committed file
check-generated:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	buf generate -o "$$tmp" && \
	buf generate --template buf.gen.docs.yaml -o "$$tmp" && \
	mkdir -p "$$tmp/broker/fastvalid/internal/testpb" && \
	go run ./broker/fastvalid/internal/gen -o "$$tmp/broker/fastvalid/rules_gen.go" && \
	go run ./broker/fastvalid/internal/gen -test -o "$$tmp/broker/fastvalid/rules_testkinds_gen_test.go" && \
	broker/fastvalid/internal/testpb/gen.sh "$$tmp/broker/fastvalid/internal/testpb/kinds.pb.go" && \
	$(MAKE) --no-print-directory bundle-into BUNDLE_OUT="$$tmp/docs/proto" >/dev/null && \
	status=0 && \
	while IFS= read -r f; do \
	  rel=$${f#"$$tmp"/}; \
	  cmp -s "$$f" "$$rel" || { echo "stale generated file: $$rel (run make generate)"; status=1; }; \
	done < <(find "$$tmp" -type f) && \
	for f in $$(git ls-files 'proto/*.pb.go'); do \
	  [ -f "$$tmp/$$f" ] || { echo "generated file without source: $$f"; status=1; }; \
	done && \
	for f in $$(find docs/proto -type f 2>/dev/null); do \
	  [ -f "$$tmp/$$f" ] || { echo "stale bundle file: $$f (run make bundle)"; status=1; }; \
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
