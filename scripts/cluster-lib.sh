# Shared by run-cluster.sh and bench.sh: start and stop a local 3-node
# brokerd cluster on loopback. Source it; needs bin/brokerd.

# start_cluster DIR GRPC_BASE RAFT_BASE: nodes n1..n3 listen on
# GRPC_BASE+i and RAFT_BASE+i. A DIR that already holds data restarts from
# disk (brokerd ignores --bootstrap-expect then).
start_cluster() {
  local dir=$1 gbase=$2 rbase=$3 i peers=""
  mkdir -p "$dir"
  for i in 1 2 3; do peers="${peers:+$peers,}n$i=127.0.0.1:$((rbase + i))"; done
  PIDS=()
  BROKERS=""
  for i in 1 2 3; do
    ./bin/brokerd --id "n$i" --data-dir "$dir/n$i" \
      --grpc-addr "127.0.0.1:$((gbase + i))" --raft-addr "127.0.0.1:$((rbase + i))" \
      --bootstrap-expect 3 --peers "$peers" --log-level "${RAFTQ_LOG_LEVEL:-warn}" \
      >>"$dir/n$i.log" 2>&1 &
    PIDS+=($!)
    BROKERS="${BROKERS:+$BROKERS,}127.0.0.1:$((gbase + i))"
  done
  export RAFTQ_BROKERS=$BROKERS
  # Wait until a leader answers a linearizable read.
  local t
  for t in $(seq 1 100); do
    if ./bin/brokerctl --brokers "$BROKERS" --timeout 2s stats >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "cluster did not elect a leader; logs in $dir/n*.log" >&2
  return 1
}

stop_cluster() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
