#!/usr/bin/env bash
# make bench-groups: durable enqueue and end-to-end throughput of one
# 3-node cluster on loopback with 1, 2 and 4 Raft groups, side by side:
# GROUPS_ROUNDS (default 3) rounds, each starting a fresh cluster per group
# count in turn (so drift of the machine's speed hits every count alike),
# then the medians and each count's ratio to one group. The load is the
# same for every count: producers and workers spread over GROUPS_QUEUES
# (default 4) queues, chosen so that each group gets an equal share
# (brokerctl bench --queues). BENCH_DURATION (default 10s) per figure.
# GROUPS_PARTITION=1 measures one hot queue instead, partitioned over every
# group (brokerctl bench --partition; GROUPS_QUEUES then defaults to 1).
# GROUPS_COUNTS lists the clusters compared ("1 2 4"); an entry G/R runs G
# groups with each group but 0 on R of the nodes (brokerd --replicas R),
# and CLUSTER_NODES (default 3) sets the node count, e.g.
# CLUSTER_NODES=5 GROUPS_COUNTS="1 4 4/3" (docs/scale-out.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster-lib.sh
rounds=${GROUPS_ROUNDS:-3}
counts=${GROUPS_COUNTS:-"1 2 4"}
partition=""
if [ "${GROUPS_PARTITION:-0}" = 1 ]; then
  partition="--partition"
  queues=${GROUPS_QUEUES:-1}
else
  queues=${GROUPS_QUEUES:-4}
fi
d=${BENCH_DURATION:-10s}
out=$(mktemp /tmp/raftq-bench-groups.XXXXXX.jsonl)
dir=""
trap 'stop_cluster 2>/dev/null || true; [ -n "$dir" ] && rm -rf "$dir"' EXIT
for r in $(seq 1 "$rounds"); do
  for spec in $counts; do
    g=${spec%/*}
    rep=()
    if [ "$spec" != "$g" ]; then rep=(--replicas "${spec#*/}"); fi
    dir=$(mktemp -d /tmp/raftq-bench-groups.XXXXXX)
    start_cluster "$dir" 7300 7400 --groups "$g" "${rep[@]}" ${BENCH_BROKERD_FLAGS:-}
    # The leader balance moves group leaderships in the first seconds;
    # a move in a figure fails some acks (their jobs wait out the lease).
    if [ "$g" -gt 1 ]; then sleep "${GROUPS_SETTLE:-8}"; fi
    b="ctl bench --duration $d --payload ${BENCH_PAYLOAD:-256} --queues $queues $partition"
    {
      $b enqueue --producers 64 --batch 1
      $b enqueue --producers 256 --batch 1
      $b enqueue --producers 8 --batch 100
      $b e2e --producers 16 --batch 10 --workers 8 --fetch-batch 64
    } | while read -r line; do echo "{\"round\":$r,\"groups_flag\":\"$spec\",${line#\{}"; done | tee -a "$out"
    stop_cluster
    rm -rf "$dir"
    dir=""
  done
done
python3 - "$out" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def key(r):
    if r["figure"] == "durable_enqueue":
        return "enqueue %dx%d" % (r["producers"], r["batch"]), r["jobs_per_sec"]
    return "e2e %dx%d, %d workers" % (r["producers"], r["batch"], r["workers"]), r["acked_per_sec_while_producing"]
med = {}
for r in rows:
    k, v = key(r)
    med.setdefault(k, {}).setdefault(str(r["groups_flag"]), []).append(v)
counts = sorted({str(r["groups_flag"]) for r in rows}, key=lambda s: [int(x) for x in s.split("/")])
def label(s):
    g, _, rep = s.partition("/")
    return "%s group%s" % (g, "s" if g != "1" else "") + (" on %s" % rep if rep else "")
print("\nmedians over %d rounds (jobs/s; ratio to 1 group):" % max(r["round"] for r in rows))
print("%-28s" % "figure" + "".join("%22s" % label(g) for g in counts))
for k, by in med.items():
    base = st.median(by.get("1", [0])) or None
    cells = []
    for g in counts:
        m = st.median(by[g])
        cells.append("%22s" % ("%.0f (%.2fx)" % (m, m / base) if base else "%.0f" % m))
    print("%-28s" % k + "".join(cells))
PY
echo "raw figures: $out"
