# Shared by run-cluster.sh and bench.sh: start and stop a local 3-node
# brokerd cluster on loopback. Source it; needs bin/brokerd (and
# bin/raftq-etcd, bin/brokerctl for start_etcd). The binaries come from
# ${RAFTQ_RUN_BIN:-./bin}; brokerd alone from ${RAFTQ_BIN:-that}, so a
# benchmark can run another build of it.
RUN_BIN=${RAFTQ_RUN_BIN:-./bin}
#
# etcd: when RAFTQ_ETCD_ENDPOINTS is set (by start_etcd, or by the caller
# for an etcd of their own), brokerd reads it from the environment and
# registers there, keeps the leader hint and follows live config.
# RAFTQ_BOOTSTRAP=etcd makes a fresh cluster bootstrap through etcd
# instead of the static --peers list.

# start_etcd DIR CLIENT_PORT PEER_PORT: unless RAFTQ_ETCD_ENDPOINTS is
# already set, start an embedded etcd (bin/raftq-etcd) with its data in
# DIR/etcd and export RAFTQ_ETCD_ENDPOINTS. Idempotent per shell.
# RAFTQ_TLS=1: etcd serves https only and requires a client certificate
# of the dev CA named node.n1-3, svcd or admin (its JSON gateway is off);
# the daemons use their own certificates, brokerctl the admin one
# (etcd_ctl_args prints its flags).
start_etcd() {
  local dir=$1 cport=$2 pport=$3 t scheme=http
  local sec=()
  ETCD_PID=""
  if [ -n "${RAFTQ_ETCD_ENDPOINTS:-}" ]; then
    return 0
  fi
  mkdir -p "$dir"
  if tls_on; then
    tls_setup
    scheme=https
    sec=(--cert-file "$RAFTQ_CERTS/etcd.crt" --key-file "$RAFTQ_CERTS/etcd.key" --trusted-ca-file "$RAFTQ_CERTS/ca.crt"
      --client-cert-allowed-cn node.n1,node.n2,node.n3,svcd,admin)
  fi
  "$RUN_BIN/raftq-etcd" --name raftq-dev --data-dir "$dir/etcd" "${sec[@]}" \
    --listen-client "$scheme://127.0.0.1:$cport" --listen-peer "$scheme://127.0.0.1:$pport" \
    >>"$dir/etcd.log" 2>&1 &
  ETCD_PID=$!
  export RAFTQ_ETCD_ENDPOINTS="$scheme://127.0.0.1:$cport"
  for t in $(seq 1 50); do
    # shellcheck disable=SC2046 # the flags are words without spaces
    if "$RUN_BIN/brokerctl" config show --etcd "$RAFTQ_ETCD_ENDPOINTS" $(etcd_ctl_args) --timeout 2s >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "embedded etcd did not start; log in $dir/etcd.log" >&2
  return 1
}

stop_etcd() {
  if [ -n "${ETCD_PID:-}" ]; then
    kill -TERM "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
    ETCD_PID=""
  fi
}

# RAFTQ_TLS=1: TLS and auth on. tls_setup makes (or renews) the dev PKI
# and tokens in ${RAFTQ_CERTS:-tmp/certs} with bin/raftq-certs and exports
# the CA brokerctl reads (RAFTQ_TLS_CA) and brokerd's node names;
# node_tls_args N DIR and svcd_tls_args DIR print the daemons' flags
# (each daemon writes its audit lines, JSON, to its own DIR/*.audit.log
# whatever the log level; a principal gets at most 1000 requests a second
# per node). The admin token is never exported: brokerd, svcd and
# workerd (which runs job code) must not inherit it; ctl runs brokerctl
# with it in brokerctl's own environment only.
tls_on() { [ "${RAFTQ_TLS:-0}" = 1 ]; }
tls_setup() {
  tls_on || return 0
  [ -z "${RAFTQ_TLS_READY:-}" ] || return 0 # once per shell (start_etcd, start_cluster)
  RAFTQ_TLS_READY=1
  RAFTQ_CERTS=${RAFTQ_CERTS:-tmp/certs}
  "$RUN_BIN/raftq-certs" --dir "$RAFTQ_CERTS" --nodes n1,n2,n3 >/dev/null
  export RAFTQ_TLS_CA="$RAFTQ_CERTS/ca.crt"
  export RAFTQ_AUTH_NODE_NAMES='node.*' # brokerd's auth.node_names (a glob: not a flag here)
}
# ctl ARGS...: brokerctl as the admin (with RAFTQ_TLS=1: the admin token
# from its file, in this one process's environment, never on its command
# line).
ctl() {
  if tls_on; then
    RAFTQ_AUTH_TOKEN=$(cat "$RAFTQ_CERTS/tokens/admin.token") "$RUN_BIN/brokerctl" "$@"
  else
    "$RUN_BIN/brokerctl" "$@"
  fi
}
# etcd_ctl_args: brokerctl's flags for the secure etcd (the admin
# certificate); nothing without RAFTQ_TLS=1. Not exported as
# RAFTQ_ETCD_TLS_*: brokerd and svcd read those names too, and they
# present their own certificates to etcd.
etcd_ctl_args() {
  tls_on || return 0
  local c=$RAFTQ_CERTS
  echo --etcd-tls-ca "$c/ca.crt" --etcd-tls-cert "$c/admin.crt" --etcd-tls-key "$c/admin.key"
}
node_tls_args() {
  tls_on || return 0
  local c=$RAFTQ_CERTS
  echo --tls-ca "$c/ca.crt" --tls-cert "$c/node.n$1.crt" --tls-key "$c/node.n$1.key" --auth-tokens-file "$c/tokens.yaml" \
    --audit-file "$2/n$1.audit.log" --auth-rate-limit 1000 --auth-rate-burst 2000
}
svcd_tls_args() {
  tls_on || return 0
  local c=$RAFTQ_CERTS
  echo --tls-ca "$c/ca.crt" --tls-cert "$c/svcd.crt" --tls-key "$c/svcd.key" --auth-tokens-file "$c/tokens.yaml" \
    --audit-file "$1/svcd.audit.log" --auth-rate-limit 1000 --auth-rate-burst 2000
}

# start_cluster DIR GRPC_BASE RAFT_BASE [BROKERD_FLAGS...]: nodes n1..n3
# (n1..n$CLUSTER_NODES when set, at most 9) listen on
# GRPC_BASE+i (gRPC), GRPC_BASE+10+i (admin HTTP and dashboard) and
# RAFT_BASE+i; with RAFTQ_SVCD set they show job histories from that svcd. A DIR that already holds data restarts from
# disk (brokerd ignores --bootstrap-expect then).
start_cluster() {
  local dir=$1 gbase=$2 rbase=$3 i peers=""
  mkdir -p "$dir"
  local nodes=${CLUSTER_NODES:-3}
  for i in $(seq 1 "$nodes"); do peers="${peers:+$peers,}n$i=127.0.0.1:$((rbase + i))"; done
  PIDS=()
  BROKERS=""
  local boot=(--peers "$peers")
  if [ "${RAFTQ_BOOTSTRAP:-peers}" = etcd ] && [ -n "${RAFTQ_ETCD_ENDPOINTS:-}" ]; then
    boot=() # the peers are found through etcd (RAFTQ_ETCD_ENDPOINTS)
  fi
  tls_setup
  NODE_ARGS=("$dir" "$gbase" "$rbase" "${boot[@]}" "${@:4}") # then extra brokerd flags
  for i in $(seq 1 "$nodes"); do
    start_node "$i"
    PIDS+=("$NODE_PID")
    BROKERS="${BROKERS:+$BROKERS,}127.0.0.1:$((gbase + i))"
  done
  export RAFTQ_BROKERS=$BROKERS
  # Wait until a leader answers a linearizable read.
  local t
  for t in $(seq 1 100); do
    if ctl --brokers "$BROKERS" --timeout 2s stats >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "cluster did not elect a leader; logs in $dir/n*.log" >&2
  return 1
}

# start_services DIR: svcd on SQLite (gRPC 127.0.0.1:7400, HTTP 7401),
# verifying every result with the brokers (RAFTQ_BROKERS, from
# start_cluster), and one workerd on queue "work" that stores every
# outcome in svcd. With RAFTQ_TLS=1 workerd reads the worker token from
# its file (--token-file): no token on a command line, where ps shows it.
start_services() {
  local dir=$1
  # shellcheck disable=SC2046
  "$RUN_BIN/svcd" --data-dir "$dir/svcd" --listen-grpc 127.0.0.1:7400 --listen-http 127.0.0.1:7401 $(svcd_tls_args "$dir") \
    --brokers "$RAFTQ_BROKERS" --log-level warn >>"$dir/svcd.log" 2>&1 &
  PIDS+=($!)
  local wtls=()
  if tls_on; then
    wtls=(--tls-ca "$RAFTQ_CERTS/ca.crt" --token-file "$RAFTQ_CERTS/tokens/worker.token")
  fi
  "$RUN_BIN/workerd" --brokers "$RAFTQ_BROKERS" --queues work:8 --svcd 127.0.0.1:7400 "${wtls[@]}" \
    --log-level warn >>"$dir/workerd.log" 2>&1 &
  PIDS+=($!)
}

# start_node I: start node nI of the cluster start_cluster made (again,
# after a kill: it restarts from its data dir); sets NODE_PID. The brokerd
# binary is ${RAFTQ_BIN:-./bin}/brokerd, so a benchmark can run another
# build.
# The node's pid goes to DIR/nI.pid, where `run-cluster.sh kill|restart I`
# and the make-run supervisor find it.
start_node() {
  local i=$1 dir=${NODE_ARGS[0]} gbase=${NODE_ARGS[1]} rbase=${NODE_ARGS[2]}
  local boot=("${NODE_ARGS[@]:3}")
  # shellcheck disable=SC2046 # the flags are words without spaces
  "${RAFTQ_BIN:-$RUN_BIN}/brokerd" --id "n$i" --data-dir "$dir/n$i" $(node_tls_args "$i" "$dir") \
    --grpc-addr "127.0.0.1:$((gbase + i))" --raft-addr "127.0.0.1:$((rbase + i))" \
    --admin-addr "127.0.0.1:$((gbase + 10 + i))" ${RAFTQ_SVCD:+--svcd-addr "$RAFTQ_SVCD"} \
    --bootstrap-expect "${CLUSTER_NODES:-3}" "${boot[@]}" --log-level "${RAFTQ_LOG_LEVEL:-warn}" \
    >>"$dir/n$i.log" 2>&1 &
  NODE_PID=$!
  echo "$NODE_PID" >"$dir/n$i.pid"
}

# node_pid I: the pid of node nI of the cluster in NODE_ARGS[0], if it runs.
node_pid() {
  local p
  p=$(cat "${NODE_ARGS[0]}/n$1.pid" 2>/dev/null) || return 1
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
}

# stop_cluster: SIGTERM every process started here and every node
# restarted from another shell (`run-cluster.sh restart`, not our child:
# waited for by polling), then wait for all of them.
stop_cluster() {
  local p i t others=()
  for i in 1 2 3; do
    if p=$(node_pid "$i"); then others+=("$p"); fi
  done
  for p in "${PIDS[@]}" "${others[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${others[@]}"; do
    for t in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  rm -f "${NODE_ARGS[0]}"/n[123].pid
}
