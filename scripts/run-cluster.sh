#!/usr/bin/env bash
# make run: a local 3-node raftq cluster on loopback, in the foreground,
# with an embedded etcd (bin/raftq-etcd, client port 7379) for discovery and
# live config, unless RAFTQ_ETCD_ENDPOINTS names an etcd already. Data
# lives in ${RAFTQ_RUN_DIR:-tmp/run}; run it again and the cluster restarts
# from disk with its jobs. Ctrl-C stops every node cleanly, then etcd.
#
# While it runs it watches its processes and says when one exits (with
# its status and the end of its log). From another shell:
#   scripts/run-cluster.sh kill I      SIGKILL node nI (try a failover)
#   scripts/run-cluster.sh restart I   start node nI again from its data dir
# (make node-kill N=I, make node-restart N=I). The running cluster's
# settings are kept in DIR/run.env for these.
set -euo pipefail
cd "$(dirname "$0")/.."
# Data dirs, databases and logs are this user's only (0600 files, 0700
# dirs): job payloads and results are not for other local users.
umask 077
. scripts/cluster-lib.sh
dir=${RAFTQ_RUN_DIR:-tmp/run}

# node_cmd kill|restart I: act on node nI of the cluster running from DIR.
node_cmd() {
  local op=$1 i=${2:-} p
  case "$i" in 1 | 2 | 3) ;; *)
    echo "usage: $0 kill|restart 1|2|3" >&2
    exit 2
    ;;
  esac
  if [ ! -f "$dir/run.env" ]; then
    echo "no cluster running from $dir (no $dir/run.env): start one with make run" >&2
    exit 1
  fi
  # shellcheck disable=SC1091 # written by the running make run
  . "$dir/run.env"
  case "$op" in
  kill)
    if ! p=$(node_pid "$i"); then
      echo "n$i is not running" >&2
      exit 1
    fi
    kill -KILL "$p"
    echo "n$i (pid $p) killed"
    ;;
  restart)
    if p=$(node_pid "$i"); then
      echo "n$i is already running (pid $p); scripts/run-cluster.sh kill $i first" >&2
      exit 1
    fi
    # Not a child of this short-lived shell's job control: it outlives it,
    # and make run's Ctrl-C stops it through its pid file.
    setsid bash -c '. scripts/cluster-lib.sh; . "$1/run.env"; start_node "$2"' _ "$dir" "$i" </dev/null
    sleep 0.3
    if ! p=$(node_pid "$i"); then
      echo "n$i did not start; see $dir/n$i.log" >&2
      tail -n 5 "$dir/n$i.log" >&2
      exit 1
    fi
    echo "n$i started again (pid $p); log in $dir/n$i.log"
    ;;
  esac
}
case "${1:-}" in
kill | restart)
  node_cmd "$@"
  exit 0
  ;;
"") ;;
*)
  echo "usage: $0 [kill|restart 1|2|3]" >&2
  exit 2
  ;;
esac

trap 'echo; echo "stopping..."; stop_cluster; stop_etcd; rm -f "$dir/run.env"; exit 0' INT TERM
start_etcd "$dir" 7379 7380
export RAFTQ_SVCD=127.0.0.1:7400
# Raft groups: what the data dir was made with (a cluster keeps its
# count), else RAFTQ_GROUPS, else 3 — queues spread over three leaders.
groups=${RAFTQ_GROUPS:-3}
if [ -f "$dir/n1/groups.count" ]; then
  groups=$(cat "$dir/n1/groups.count")
elif [ -e "$dir/n1/fsm.db" ]; then
  groups=1
fi
start_cluster "$dir" 7100 7200 --groups "$groups"
start_services "$dir"
# What `kill`/`restart` from another shell need to start a node exactly as
# this run did (no secrets: tokens stay in their files).
{
  declare -p NODE_ARGS
  for v in RAFTQ_ETCD_ENDPOINTS RAFTQ_SVCD RAFTQ_TLS RAFTQ_CERTS RAFTQ_TLS_CA RAFTQ_AUTH_NODE_NAMES \
    RAFTQ_BOOTSTRAP RAFTQ_LOG_LEVEL RAFTQ_BIN RAFTQ_RUN_BIN; do
    if [ -n "${!v:-}" ]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
  done
  echo "RUN_BIN=$(printf %q "$RUN_BIN")"
} >"$dir/run.env"
cat <<TXT
raftq is running: 3 brokerd nodes on loopback, $groups Raft groups (data in $dir, logs in $dir/n*.log)
  n1  gRPC 127.0.0.1:7101  raft 127.0.0.1:7201
  n2  gRPC 127.0.0.1:7102  raft 127.0.0.1:7202
  n3  gRPC 127.0.0.1:7103  raft 127.0.0.1:7203
  etcd    $RAFTQ_ETCD_ENDPOINTS (registry, leader hint, live config)
  svcd    gRPC 127.0.0.1:7400, HTTP 127.0.0.1:7401 (results, SQLite in $dir/svcd; each result's
          queue and lease token verified with the broker leader before it is stored)
  workerd queue "work" (echo, sleep, sha256, flaky, fail), results stored in svcd
  dashboard http://127.0.0.1:7111/ui/ (admin API on 7111-7113)

Try, in another shell (brokerctl finds the leader by itself):
  ./bin/brokerctl enqueue --queue default --type echo --payload hello
  ./bin/brokerctl fetch --queue default --ack          # lease it yourself, print it, ack it
  ./bin/brokerctl enqueue --queue work --type sha256 --payload hello   # workerd runs this one
  curl -s 127.0.0.1:7401/v1/results/JOB_ID             # its result in svcd
  ./bin/brokerctl queues list
  ./bin/brokerctl cluster status
  ./bin/brokerctl config set queue default --max-in-flight 4 --rate 50 --etcd $RAFTQ_ETCD_ENDPOINTS
  ./bin/brokerctl config show --etcd $RAFTQ_ETCD_ENDPOINTS         # live settings, brokers, leader
Ctrl-C stops the cluster.
TXT
if tls_on; then
  cat <<TXT

RAFTQ_TLS=1: TLS everywhere (Raft mutual TLS) and auth on; certificates and tokens in $RAFTQ_CERTS.
Audit lines (JSON: admin actions, refused calls; any log level) in $dir/n*.audit.log and $dir/svcd.audit.log;
each principal may make 1000 requests/s per node, park 1024 Fetches and hold 256 streams (limits.* keys).
Every URL above is https, and brokerctl needs, in another shell:
  export RAFTQ_TLS_CA=$RAFTQ_TLS_CA RAFTQ_AUTH_TOKEN=\$(cat $RAFTQ_CERTS/tokens/admin.token)
  (producer and worker tokens: $RAFTQ_CERTS/tokens/producer.token, worker.token)
  export RAFTQ_ETCD_TLS_CA=$RAFTQ_TLS_CA RAFTQ_ETCD_TLS_CERT=$RAFTQ_CERTS/admin.crt RAFTQ_ETCD_TLS_KEY=$RAFTQ_CERTS/admin.key   # brokerctl config
  curl --cacert $RAFTQ_TLS_CA -H "Authorization: Bearer \$RAFTQ_AUTH_TOKEN" https://127.0.0.1:7111/v1/queues
  dashboard https://127.0.0.1:7111/ui/ (any user name, the admin token as password; trust $RAFTQ_TLS_CA)
  curl --cacert $RAFTQ_TLS_CA -H "Authorization: Bearer \$(cat $RAFTQ_CERTS/tokens/producer.token)" https://127.0.0.1:7401/v1/results/JOB_ID
Secrets: workerd reads its worker token from $RAFTQ_CERTS/tokens/worker.token (--token-file);
no daemon gets the admin token (not in any command line or environment). Data, databases and
logs under $dir are 0600/0700. Browser writes from other sites (Origin null included) are
refused by the admin API and svcd.
Raft (7201-7203) takes only node certificates (URI raftq://node/<id>, CN node.*, the id at that address);
  client.crt, svcd.crt and a node certificate of a non-member are refused at the handshake.
etcd ($RAFTQ_ETCD_ENDPOINTS) is https only and needs a client certificate of this CA named node.n1-3, svcd
  or admin (live config, registrations, leader hint, bootstrap record); its JSON gateway is off. The CA key
  is in $RAFTQ_CERTS/ca/, apart from the node keys.
TXT
fi
ctl status || true

# Watch the processes: say when a node exits (and when it is back), or
# when svcd or workerd exits. A node restarted from another shell is not
# our child: its exit status cannot be known, only that it is gone.
declare -A down=()
svc_names=(svcd workerd)
svc_pids=("${PIDS[@]:3}")
watch_once() {
  local i p st
  for i in 1 2 3; do
    if p=$(node_pid "$i"); then
      if [ "${down[n$i]:-}" = 1 ]; then
        echo "$(date +%T) n$i is running again (pid $p)"
        down[n$i]=0
      fi
    elif [ "${down[n$i]:-}" != 1 ]; then
      down[n$i]=1
      p=$(cat "$dir/n$i.pid" 2>/dev/null || echo "?")
      st=""
      if [ "$p" = "${PIDS[$((i - 1))]}" ]; then
        wait "$p" 2>/dev/null && st=0 || st=$?
      fi
      echo "$(date +%T) n$i (pid $p) exited${st:+ with status $st$( [ "$st" -gt 128 ] && echo " (signal $((st - 128)))")}; log: $dir/n$i.log"
      tail -n 5 "$dir/n$i.log" | sed 's/^/    /'
      echo "  restart it, from another shell: scripts/run-cluster.sh restart $i   (or make node-restart N=$i)"
    fi
  done
  for i in 0 1; do
    p=${svc_pids[$i]}
    if [ "${down[${svc_names[$i]}]:-}" != 1 ] && ! kill -0 "$p" 2>/dev/null; then
      down[${svc_names[$i]}]=1
      wait "$p" 2>/dev/null && st=0 || st=$?
      echo "$(date +%T) ${svc_names[$i]} (pid $p) exited with status $st; see $dir/${svc_names[$i]}.log (Ctrl-C and make run again to restart it)"
    fi
  done
}
# Bash's own "Killed" job notices (stderr) would repeat what watch_once says.
while :; do
  watch_once 2>/dev/null
  sleep 1 &
  wait $! 2>/dev/null || true
done
