#!/usr/bin/env bash
# bench-failover: how long a client waits for the cluster after its leader
# dies. Starts a fresh 3-node cluster on loopback (ports 7500-7613), then
# FAILOVER_KILLS times (default 6): SIGKILL the leader, and at once run
# `brokerctl enqueue` (the real client: it dials every broker, follows
# NOT_LEADER and retries); the figure is the time from the kill to that
# enqueue's durable answer. The killed node is restarted and the cluster
# left to converge before the next kill. Prints one JSON line.
# Extra brokerd flags (e.g. Raft timeouts to compare) come from
# FAILOVER_BROKERD_FLAGS; RAFTQ_BIN picks the brokerd build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster-lib.sh
dir=$(mktemp -d /tmp/raftq-failover.XXXXXX)
trap 'stop_cluster; rm -rf "$dir"' EXIT
kills=${FAILOVER_KILLS:-6}
# shellcheck disable=SC2206 # words on purpose
extra=(${FAILOVER_BROKERD_FLAGS:-})
start_cluster "$dir" 7500 7600 "${extra[@]}" >/dev/null
brokers=$RAFTQ_BROKERS

leader_id() {
  ctl --brokers "$brokers" --timeout 2s cluster status -o json 2>/dev/null |
    tr ',' '\n' | sed -n 's/.*"leader_id": *"\(n[0-9]\)".*/\1/p' | sort | uniq -c | sort -rn | awk 'NR==1 && $1>=2 {print $2}'
}
# converged: three nodes answer with one leader and equal applied indexes.
converged() {
  local s
  s=$(ctl --brokers "$brokers" --timeout 2s cluster status -o json 2>/dev/null) || return 1
  [ "$(echo "$s" | tr ',' '\n' | grep -c '"state": *"\(Leader\|Follower\)"')" = 3 ] || return 1
  [ "$(echo "$s" | tr ',' '\n' | sed -n 's/.*"applied_index": *"\{0,1\}\([0-9]*\).*/\1/p' | sort -u | wc -l)" = 1 ]
}
ms=()
for k in $(seq 1 "$kills"); do
  for t in $(seq 1 150); do converged && break; sleep 0.2; done
  ctl --brokers "$brokers" --timeout 10s enqueue --queue failover --type warm --payload x >/dev/null
  l=$(leader_id)
  [ -n "$l" ] || { echo "no leader before kill $k" >&2; exit 1; }
  i=${l#n}
  p=$(node_pid "$i")
  t0=$(date +%s%N)
  kill -KILL "$p"
  ctl --brokers "$brokers" --timeout 20s enqueue --queue failover --type probe --payload "$k" >/dev/null
  t1=$(date +%s%N)
  ms+=($(((t1 - t0) / 1000000)))
  { wait "$p"; } 2>/dev/null || true # no "Killed" notice
  start_node "$i"
  PIDS[$((i - 1))]=$NODE_PID
done
sorted=$(printf '%s\n' "${ms[@]}" | sort -n)
p50=$(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
max=$(echo "$sorted" | tail -n1)
all=$(IFS=,; echo "${ms[*]}")
echo "{\"figure\":\"failover\",\"kills\":$kills,\"p50_ms\":$p50,\"max_ms\":$max,\"each_ms\":[$all],\"brokerd_flags\":\"${FAILOVER_BROKERD_FLAGS:-}\"}"
