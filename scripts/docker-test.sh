#!/usr/bin/env bash
# docker-test.sh — the Docker system test (make docker-test):
#   1. builds the images with no registry (scripts/docker-build.sh),
#   2. brings up deploy/compose.yaml, profile local (3 brokerd, etcd, svcd on
#      SQLite, workerd) under a project name of its own, publishing the
#      brokers' and svcd's gRPC ports on free 127.0.0.1 ports,
#   3. runs deploy/dockertest on the host: enqueue 1,000 jobs, kill the
#      leader's container mid-run, check every job completed exactly once,
#      then start the killed broker again and check it catches up,
#   4. tears everything down (docker-compose down -v), pass or fail.
# Prints "docker-test: SKIPPED (no Docker engine)" and exits 0 when no
# Docker engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

if ! docker info >/dev/null 2>&1; then
  echo "docker-test: SKIPPED (no Docker engine)"
  exit 0
fi
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  echo "docker-test: FAIL: a Docker engine answers but neither 'docker compose' nor docker-compose is installed" >&2
  exit 1
fi

# The local profile needs these four images (brokerctl is not part of it).
scripts/docker-build.sh brokerd workerd svcd raftq-etcd
CGO_ENABLED=0 "$GO" build -o bin/dockertest ./deploy/dockertest

# Free loopback ports for the published gRPC ports (other clusters may be
# running on this host).
used() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=${RAFTQ_DT_PORT_BASE:-27101}
ports=()
while [ ${#ports[@]} -lt 4 ]; do
  used "$port" || ports+=("$port")
  port=$((port + 1))
done
export RAFTQ_BIND=127.0.0.1
export RAFTQ_BROKERD1_PORT=${ports[0]} RAFTQ_BROKERD2_PORT=${ports[1]} RAFTQ_BROKERD3_PORT=${ports[2]} RAFTQ_SVCD_PORT=${ports[3]}

project="raftqdt$$"
dc=("${compose[@]}" -p "$project" -f deploy/compose.yaml --profile local)
status=1
cleanup() {
  if [ "$status" -ne 0 ]; then
    echo "docker-test: container logs (last 60 lines each):"
    "${dc[@]}" logs --no-color --tail=60 || true
  fi
  echo "docker-test: tearing down ($project)"
  "${dc[@]}" down -v --remove-orphans >/dev/null 2>&1 || "${dc[@]}" down -v --remove-orphans || true
}
trap cleanup EXIT

echo "docker-test: starting the local stack ($project): brokers on 127.0.0.1:$RAFTQ_BROKERD1_PORT,$RAFTQ_BROKERD2_PORT,$RAFTQ_BROKERD3_PORT, svcd on 127.0.0.1:$RAFTQ_SVCD_PORT"
"${dc[@]}" up -d --no-build

bin/dockertest \
  --brokers "brokerd1=127.0.0.1:$RAFTQ_BROKERD1_PORT,brokerd2=127.0.0.1:$RAFTQ_BROKERD2_PORT,brokerd3=127.0.0.1:$RAFTQ_BROKERD3_PORT" \
  --svcd "127.0.0.1:$RAFTQ_SVCD_PORT" \
  --kill-cmd "${dc[*]} kill -s SIGKILL" \
  --restart-cmd "${dc[*]} start" \
  --jobs "${RAFTQ_DT_JOBS:-1000}"
"${dc[@]}" ps
status=0
