#!/usr/bin/env bash
# make bench: start a fresh 3-node cluster on loopback and print one JSON
# line per figure. BENCH_DURATION (default 10s) sets each run's length;
# BENCH_BROKERD_FLAGS go to every brokerd (e.g. "--raft-log-store bolt" to
# compare the two Raft log stores).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster-lib.sh
dir=$(mktemp -d /tmp/raftq-bench.XXXXXX)
trap 'stop_cluster; rm -rf "$dir"' EXIT
start_cluster "$dir" 7300 7400 ${BENCH_BROKERD_FLAGS:-}
d=${BENCH_DURATION:-10s}
b="ctl bench --duration $d --payload ${BENCH_PAYLOAD:-256}"
# The SDK's paths (bench's defaults): single jobs with EnqueueOne over
# EnqueueStream, workers on Consume streams acking with AckBatch.
$b enqueue --producers 1 --batch 1 --clients 1
$b enqueue --producers 64 --batch 1
$b enqueue --producers 8 --batch 100
$b e2e --producers 16 --batch 10 --workers 8 --fetch-batch 64
$b e2e --producers 64 --batch 1 --workers 8 --fetch-batch 64
# The unary paths for comparison: one Enqueue call per job; Fetch long
# polls and one Ack per job.
$b enqueue --producers 64 --batch 1 --stream=false
$b e2e --producers 16 --batch 10 --workers 8 --fetch-batch 64 --consume=false --ack-batch=false
# Failover: a client's wait from a leader's SIGKILL to its next durable
# enqueue, over FAILOVER_KILLS (default 6) kills, on a cluster of its own.
scripts/bench-failover.sh
