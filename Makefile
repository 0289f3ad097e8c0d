# raftq — see README.md. Every target works on a fresh machine with Go and
# (for `proto`) protoc installed; .ci/run installs what CI needs.
SHELL := /bin/bash
GO ?= go
BIN := bin
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
PROTO_FILES := $(shell find proto -name '*.proto')

.PHONY: build test test-short proto proto-check run bench lint fmt clean tools

build:
	$(GO) build -o $(BIN)/ ./cmd/...

tools:
	GOFLAGS=-mod=mod $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOFLAGS=-mod=mod $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# proto regenerates the Go code from proto/ (committed; CI checks for drift).
proto:
	PATH="$(GOBIN_DIR):$$PATH" protoc -I proto \
	  --go_out=. --go_opt=module=github.com/raftq/raftq \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/raftq/raftq \
	  $(PROTO_FILES)

# proto-check fails when the committed generated code differs from what
# `make proto` produces.
proto-check: proto
	git diff --exit-code -- '*.pb.go' || (echo "generated protobuf code is out of date: run make proto and commit" >&2; exit 1)

# test runs every test (unit, property, in-process clusters, system tests).
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...

test-short:
	$(GO) test -count=1 -short ./...

# run starts a local 3-node cluster on loopback (Ctrl-C stops it).
run: build
	./scripts/run-cluster.sh

# bench starts a 3-node cluster on loopback and prints one JSON line per figure.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./fsm/
	./scripts/bench.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || (gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); exit 1)
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '\.pb\.go$$')

clean:
	rm -rf $(BIN)
