#!/usr/bin/env bash
# make bench-backlog: a fresh 3-node cluster on loopback filled to
# BACKLOG_JOBS (default 1,000,000) queued 256-byte jobs with batched enqueue
# (8 producers x 100). Prints one JSON line with the enqueue rate into an
# empty queue and at the backlog, RSS per node (VmRSS and RssAnon from
# /proc), data dir size, and restart-to-serving of a SIGKILLed follower and
# of the SIGKILLed leader (from the new process's start until its FSM has
# applied everything it had before the kill, read from /metrics), of a
# follower stopped with SIGTERM (a clean close records the store's free page
# list, so its next open skips the walk of the whole store), and the
# time a new, empty 4th node takes from its start (--join) until its FSM has
# applied what the leader had (a snapshot install when the log no longer
# holds every entry; "new_node_snapshot" says whether one was installed).
# RAFTQ_BIN picks the brokerd build (default ./bin), to compare two builds;
# BACKLOG_RESTARTS=0 stops after the rate and RSS at the backlog (the 10M
# variant: BACKLOG_JOBS=10000000 BACKLOG_RESTARTS=0; a crash restart there
# takes minutes). BACKLOG_BROKERD_FLAGS go to every brokerd (e.g. "--raft-snapshot-threshold
# 65536" to compare snapshot settings).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster-lib.sh
N=${BACKLOG_JOBS:-1000000}
sample=${BACKLOG_SAMPLE:-5s}
gbase=7500
dir=$(mktemp -d /tmp/raftq-backlog.XXXXXX)
trap 'stop_cluster; rm -rf "$dir"' EXIT
# shellcheck disable=SC2086 # the flags are words
start_cluster "$dir" "$gbase" 7600 ${BACKLOG_BROKERD_FLAGS:-}
b=(./bin/brokerctl bench enqueue --producers 8 --batch 100 --payload 256 --queue backlog)

metric() { # metric I NAME: a gauge of node nI
  curl -sf "http://127.0.0.1:$((gbase + 10 + $1))/metrics" | awk -v m="$2" '$1 == m {v = $2} END {print v}'
}
rss() { # rss I FIELD: kB
  awk -v f="$2:" '$1 == f {print $2}' "/proc/${PIDS[$(($1 - 1))]}/status"
}
node_json() {
  local i out=""
  for i in 1 2 3; do
    out="$out${out:+,}\"n$i\":{\"vmrss_mb\":$(($(rss "$i" VmRSS) / 1024)),\"rssanon_mb\":$(($(rss "$i" RssAnon) / 1024)),\"dir_mb\":$(du -sm "$dir/n$i" | cut -f1)}"
  done
  echo "{$out}"
}
# restart I: SIGKILL node nI, start it again (PIDS keeps the new process,
# so it runs in this shell, not in $(...)), and set RESTART_S to the
# seconds until its FSM is back at the applied index it had.
restart() { # restart I [SIGNAL]: stop node nI with SIGNAL (default KILL), start it, time it
  local i=$1 sig=${2:-KILL} want t0 got
  want=$(metric "$i" raftq_fsm_applied_index)
  kill "-$sig" "${PIDS[$((i - 1))]}"
  wait "${PIDS[$((i - 1))]}" 2>/dev/null || true
  t0=$(date +%s.%N)
  start_node "$i"
  PIDS[$((i - 1))]=$NODE_PID
  while :; do
    got=$(metric "$i" raftq_fsm_applied_index || true)
    if [ -n "$got" ] && awk -v g="$got" -v w="$want" 'BEGIN{exit !(g+0 >= w+0)}'; then break; fi
    sleep 0.05
  done
  RESTART_S=$(echo "$(date +%s.%N) - $t0" | bc)
}
leader() {
  local i
  for i in 1 2 3; do
    if [ "$(metric "$i" raftq_leader_ready || true)" = 1 ]; then echo "$i"; return; fi
  done
}

first=$("${b[@]}" --duration "$sample")
rate0=$(jq .jobs_per_sec <<<"$first")
start=$(date +%s)
left=$((N - $(jq .jobs <<<"$first")))
if [ "$left" -gt 0 ]; then # the first sample may already have queued N
  "${b[@]}" --duration 24h --jobs "$left" >/dev/null
fi
fill_s=$(($(date +%s) - start))
rateN=$("${b[@]}" --duration "$sample" | jq .jobs_per_sec)
sleep 2
nodes=$(node_json)
if [ "${BACKLOG_RESTARTS:-1}" = 0 ]; then
  # The long variant's fill and rate only: a crash restart walks the whole
  # store (bbolt's free page list; fsm/DESIGN.md), minutes at 10M jobs.
  echo "{\"figure\":\"backlog\",\"build\":\"${RAFTQ_BIN:-./bin}\",\"queued\":$N,\"fill_seconds\":$fill_s,\"enqueue_per_sec_empty\":$rate0,\"enqueue_per_sec_at_backlog\":$rateN,\"nodes\":$nodes}"
  exit 0
fi
l=$(leader)
f=$((l % 3 + 1))
restart "$f"
follower_s=$RESTART_S
sleep 2
restart "$l"
leader_s=$RESTART_S
sleep 2
l=$(leader)
restart "$((l % 3 + 1))" TERM
follower_term_s=$RESTART_S
# join: a new empty node n4 joins through the others; NEW_S is the seconds
# from its start until its FSM holds everything the leader had.
l=$(leader)
want=$(metric "$l" raftq_fsm_applied_index)
t0=$(date +%s.%N)
"${RAFTQ_BIN:-./bin}/brokerd" --id n4 --data-dir "$dir/n4" \
  --grpc-addr "127.0.0.1:$((gbase + 4))" --raft-addr "127.0.0.1:7604" --admin-addr "127.0.0.1:$((gbase + 14))" \
  --join "127.0.0.1:$((gbase + 1)),127.0.0.1:$((gbase + 2)),127.0.0.1:$((gbase + 3))" \
  ${BACKLOG_BROKERD_FLAGS:-} --log-level warn >>"$dir/n4.log" 2>&1 &
PIDS+=($!)
new_s=null # stays null if n4 has not caught up within 10 minutes
while [ $(($(date +%s) - ${t0%.*})) -lt 600 ]; do
  got=$(metric 4 raftq_fsm_applied_index || true)
  if [ -n "$got" ] && awk -v g="$got" -v w="$want" 'BEGIN{exit !(g+0 >= w+0)}'; then
    new_s=$(echo "$(date +%s.%N) - $t0" | bc)
    break
  fi
  sleep 0.1
done
new_snap=false
if [ -n "$(ls -A "$dir/n4/snapshots" 2>/dev/null)" ]; then new_snap=true; fi
echo "{\"figure\":\"backlog\",\"build\":\"${RAFTQ_BIN:-./bin}\",\"queued\":$N,\"fill_seconds\":$fill_s,\"enqueue_per_sec_empty\":$rate0,\"enqueue_per_sec_at_backlog\":$rateN,\"nodes\":$nodes,\"restart_follower_s\":$follower_s,\"restart_leader_s\":$leader_s,\"restart_follower_sigterm_s\":$follower_term_s,\"new_node_s\":$new_s,\"new_node_snapshot\":$new_snap}"
