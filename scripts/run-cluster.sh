#!/usr/bin/env bash
# make run: a local 3-node raftq cluster on loopback, in the foreground,
# with an embedded etcd (bin/raftq-etcd, client port 7379) for discovery and
# live config, unless RAFTQ_ETCD_ENDPOINTS names an etcd already. Data
# lives in ${RAFTQ_RUN_DIR:-tmp/run}; run it again and the cluster restarts
# from disk with its jobs. Ctrl-C stops every node cleanly, then etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
# Data dirs, databases and logs are this user's only (0600 files, 0700
# dirs): job payloads and results are not for other local users.
umask 077
. scripts/cluster-lib.sh
dir=${RAFTQ_RUN_DIR:-tmp/run}
trap 'echo; echo "stopping..."; stop_cluster; stop_etcd; exit 0' INT TERM
start_etcd "$dir" 7379 7380
export RAFTQ_SVCD=127.0.0.1:7400
start_cluster "$dir" 7100 7200
start_services "$dir"
cat <<TXT
raftq is running: 3 brokerd nodes on loopback (data in $dir, logs in $dir/n*.log)
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
wait
