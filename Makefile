# raftq — see README.md. Every target works on a fresh machine with Go and
# (for `proto`) protoc installed; .ci/run installs what CI needs.
SHELL := /bin/bash
GO ?= go
# Every target builds with go1.26.11 (the standard library fixes govulncheck
# needs); the go command fetches it from the module proxy once per machine.
# Go's own default here is GOTOOLCHAIN=local, which ignores go.mod's
# toolchain line, so it is exported for every recipe and script.
GOTOOLCHAIN := go1.26.11
export GOTOOLCHAIN
BIN := bin
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
PROTO_FILES := $(shell find proto -name '*.proto')

.PHONY: build test test-short proto proto-check api-doc run node-kill node-restart bench bench-backlog bench-groups lint fmt clean tools

# Every binary's --version: the release from git describe and the commit
# (internal/version falls back to Go's build info without them).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/raftq/raftq/internal/version.Version=$(VERSION) -X github.com/raftq/raftq/internal/version.Commit=$(COMMIT)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

tools:
	GOFLAGS=-mod=mod $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOFLAGS=-mod=mod $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# proto regenerates the Go code from proto/ (committed; CI checks for drift);
# run make api-doc after it when proto comments changed.
proto:
	PATH="$(GOBIN_DIR):$$PATH" protoc -I proto \
	  --go_out=. --go_opt=module=github.com/raftq/raftq \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/raftq/raftq \
	  $(PROTO_FILES)

# api-doc writes docs/api.md, the gRPC API reference, from the proto
# comments (docs/apidoc_test.go; make test fails when it is stale).
api-doc:
	RAFTQ_UPDATE_API_DOC=1 $(GO) test -count=1 -run TestAPIDocIsCurrent ./docs/

# proto-check fails when the committed generated code differs from what
# `make proto` produces.
proto-check: proto
	git diff --exit-code -- '*.pb.go' || (echo "generated protobuf code is out of date: run make proto and commit" >&2; exit 1)

# test runs every test (unit, property, in-process clusters, system tests).
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...
	cd deploy/k8s && $(GO) vet ./... && $(GO) test -count=1 ./...

test-short:
	$(GO) test -count=1 -short ./...

# run starts a local 3-node cluster on loopback (Ctrl-C stops it).
run: build
	./scripts/run-cluster.sh

# node-kill / node-restart N=I: SIGKILL node nI of the running `make run`
# cluster, or start it again from its data dir (from another shell).
node-kill:
	./scripts/run-cluster.sh kill $(N)

node-restart:
	./scripts/run-cluster.sh restart $(N)

# bench starts a 3-node cluster on loopback and prints one JSON line per figure.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./fsm/
	./scripts/bench.sh

# bench-backlog fills a fresh 3-node cluster to BACKLOG_JOBS (default 1M)
# queued jobs and prints enqueue rate, RSS per node and restart times.
bench-backlog: build
	./scripts/bench-backlog.sh

# bench-groups: throughput of one cluster with 1, 2 and 4 Raft groups, in
# alternating rounds (docs/scale-out.md).
bench-groups: build
	./scripts/bench-groups.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || (gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); exit 1)
	$(GO) vet ./...
	$(GO) vet -tags jepsen,jepsenbug ./...
	cd deploy/k8s && $(GO) vet ./...
	./scripts/vulncheck.sh

# certs writes a development CA (its key apart in ca/), node/svcd/etcd/client/admin certificates and bearer
# tokens into $(CERTS_DIR) (cmd/raftq-certs); RAFTQ_TLS=1 make run uses them.
CERTS_DIR ?= tmp/certs
.PHONY: certs fuzz-short vulncheck
certs:
	$(GO) run ./cmd/raftq-certs --dir $(CERTS_DIR)

# fuzz-short runs every fuzz target for FUZZTIME (default 20s) each.
fuzz-short:
	./scripts/fuzz-short.sh

vulncheck:
	./scripts/vulncheck.sh

fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '\.pb\.go$$')

clean:
	rm -rf $(BIN)

# docker builds the images (raftq/brokerd, workerd, svcd, brokerctl,
# raftq-etcd) FROM scratch with static binaries built here: no registry
# needed. docker-test brings up deploy/compose.yaml (profile local), enqueues
# 1,000 jobs, kills the leader's container, checks every job completed
# exactly once, and tears it down; it prints SKIPPED when no Docker engine
# answers. See docker/README.md and deploy/README.md.
.PHONY: docker docker-test
docker:
	./scripts/docker-build.sh

docker-test:
	./scripts/docker-test.sh

# jepsen: the fault-injection harness (jepsen/, cmd/jepsen; see
# jepsen/DESIGN.md). Needs root; scripts/jepsen-deps.sh installs iproute2
# and iptables when missing. brokerd is built with -tags jepsen (clock
# offsets, crash points); jepsen-bug adds the seeded bugs (jepsenbug tag) and
# passes only if the fencing checker catches the stale-ack bug, the queue
# checker the early-enqueue-ack bug and the workflow checker the
# workflow-ignore-deps bug, and the queue checker the move-skip-drain bug
# (a queue move that finishes with jobs left in the old group).
JEPSEN_FLAGS ?=
.PHONY: jepsen-build jepsen jepsen-short jepsen-bug
jepsen-build:
	$(GO) build -ldflags '$(LDFLAGS)' -tags jepsen -o $(BIN)/chaos/brokerd ./cmd/brokerd
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/chaos/svcd ./cmd/svcd
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/chaos/workerd ./cmd/workerd
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/chaos/jepsen ./cmd/jepsen

jepsen: jepsen-build
	./scripts/jepsen-deps.sh
	./$(BIN)/chaos/jepsen run --nodes 3 --schedule random --time-limit 6m --workerd 2 $(JEPSEN_FLAGS)
	./$(BIN)/chaos/jepsen run --nodes 5 --schedule random --time-limit 6m --workerd 2 $(JEPSEN_FLAGS)

jepsen-short: jepsen-build
	./scripts/jepsen-deps.sh
	./$(BIN)/chaos/jepsen run --nodes 3 --schedule short --quiet 5s --fault 6s --rest 3s --drain 90s --workerd 2 $(JEPSEN_FLAGS)
	$(MAKE) --no-print-directory jepsen-groups-run
	$(MAKE) --no-print-directory jepsen-replicas-run

# jepsen-groups: 3 nodes running 3 Raft groups (brokerd --groups 3), one
# queue per group, every kill and partition once, a membership replace and
# the two leader crash points (leader faults hit a random group's leader)
# and a queue moved to another group under load (move/queue);
# the groups checker fails on any group that lost a value, made a job
# twice or accepted a stale ack. About 2.5 minutes; jepsen-short runs it
# after the one-group run.
.PHONY: jepsen-groups jepsen-groups-run
jepsen-groups: jepsen-build
	./scripts/jepsen-deps.sh
	$(MAKE) --no-print-directory jepsen-groups-run
jepsen-groups-run:
	./$(BIN)/chaos/jepsen run --nodes 3 --groups 3 --schedule short --nemesis kill,partition,membership,move,crash/commit-before-reply,crash/lease-before-reply --quiet 5s --fault 6s --rest 3s --drain 60s --workerd 2 $(JEPSEN_FLAGS)

# jepsen-replicas: 5 nodes running 4 Raft groups, each group but 0 on 3 of
# them (brokerd --replicas 3): calls for a group a node does not run go to
# that group's leader, and the membership nemesis's replace makes group
# 0's leader re-place the replicas the removed node ran (a new member
# caught up as a non-voter before the old one goes). Same checkers, per
# group, each group's state compared across its own members.
.PHONY: jepsen-replicas jepsen-replicas-run
jepsen-replicas: jepsen-build
	./scripts/jepsen-deps.sh
	$(MAKE) --no-print-directory jepsen-replicas-run
jepsen-replicas-run:
	./$(BIN)/chaos/jepsen run --nodes 5 --groups 4 --replicas 3 --schedule short --nemesis kill,partition,membership,move --quiet 5s --fault 6s --rest 3s --drain 60s --workerd 2 $(JEPSEN_FLAGS)

jepsen-bug:
	$(GO) build -ldflags '$(LDFLAGS)' -tags jepsen,jepsenbug -o $(BIN)/jepsen-bug/brokerd ./cmd/brokerd
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/jepsen-bug/svcd ./cmd/svcd
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/chaos/jepsen ./cmd/jepsen
	./scripts/jepsen-deps.sh
	./$(BIN)/chaos/jepsen run --bin $(BIN)/jepsen-bug --bug stale-ack --nodes 3 --nemesis none --quiet 0s --time-limit 25s --zombie 0.05 --work 300ms --drain 30s --expect-invalid fencing $(JEPSEN_FLAGS)
	./$(BIN)/chaos/jepsen run --bin $(BIN)/jepsen-bug --bug early-enqueue-ack --nodes 3 --nemesis kill/leader --quiet 3s --fault 3s --rest 3s --time-limit 20s --drain 30s --expect-invalid queue $(JEPSEN_FLAGS)
	./$(BIN)/chaos/jepsen run --bin $(BIN)/jepsen-bug --bug workflow-ignore-deps --nodes 3 --nemesis none --quiet 0s --time-limit 15s --drain 30s --expect-invalid workflow $(JEPSEN_FLAGS)
	./$(BIN)/chaos/jepsen run --bin $(BIN)/jepsen-bug --bug move-skip-drain --nodes 3 --groups 3 --nemesis move --quiet 3s --fault 3s --rest 3s --time-limit 20s --rate 40 --workers 3 --work 300ms --drain 60s --expect-invalid queue $(JEPSEN_FLAGS)
