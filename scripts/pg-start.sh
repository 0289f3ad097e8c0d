#!/usr/bin/env bash
# pg-start.sh makes a local PostgreSQL server ready for svcd's tests:
# installs Debian's postgresql if it is missing, creates and starts a cluster,
# sets the postgres user's password to "postgres" and creates the database
# raftq_test. Safe to run again at any time (every step checks first); runs as
# root (CI) or as a user with sudo.
#
# Env: PG_PORT (default 5432), PG_DB (default raftq_test),
#      PG_PASSWORD (default postgres).
set -euo pipefail

PG_PORT="${PG_PORT:-5432}"
PG_DB="${PG_DB:-raftq_test}"
PG_PASSWORD="${PG_PASSWORD:-postgres}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { echo "pg-start: $*" >&2; }

# 1. Install when missing.
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  log "installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq postgresql >/dev/null
fi

PG_VER="$(ls /usr/lib/postgresql | sort -n | tail -1)"
CLUSTER=main

# 2. Create a cluster when none exists (the package usually creates "main").
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$PG_VER $CLUSTER"; then
  log "creating cluster $PG_VER/$CLUSTER on port $PG_PORT"
  $SUDO pg_createcluster "$PG_VER" "$CLUSTER" --port "$PG_PORT" >/dev/null
fi

# 3. Start it unless it is already online.
status="$(pg_lsclusters -h | awk -v v="$PG_VER" -v c="$CLUSTER" '$1==v && $2==c {print $4}')"
if [ "$status" != "online" ]; then
  log "starting cluster $PG_VER/$CLUSTER"
  $SUDO pg_ctlcluster "$PG_VER" "$CLUSTER" start
fi
port="$(pg_lsclusters -h | awk -v v="$PG_VER" -v c="$CLUSTER" '$1==v && $2==c {print $3}')"

# Wait until it accepts connections (start returns before that on slow disks).
for _ in $(seq 1 60); do
  if pg_isready -q -h 127.0.0.1 -p "$port"; then break; fi
  sleep 0.5
done
pg_isready -h 127.0.0.1 -p "$port" >/dev/null || { log "server on port $port is not ready"; exit 1; }

psql_pg() { $SUDO -u postgres psql -p "$port" -v ON_ERROR_STOP=1 -qtAX "$@"; }
if [ -z "$SUDO" ]; then psql_pg() { runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qtAX "$@"; }; fi

# 4. Password (idempotent: ALTER sets the same value again).
psql_pg -c "ALTER USER postgres PASSWORD '${PG_PASSWORD}';" >/dev/null

# 5. Database.
if [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname = '${PG_DB}'")" != "1" ]; then
  log "creating database $PG_DB"
  psql_pg -c "CREATE DATABASE \"${PG_DB}\";" >/dev/null
fi

log "ready: host=127.0.0.1 port=$port user=postgres dbname=$PG_DB"
