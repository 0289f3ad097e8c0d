#!/usr/bin/env bash
# pg-start.sh makes a local PostgreSQL server ready for svcd's tests:
# installs Debian's postgresql when missing, creates and starts a cluster,
# sets the postgres user's password and creates the test database. Every step
# checks first, so it is safe to run again at any time, as root (CI) or as a
# user with sudo.
#
# Env: PG_PORT (default 5432, used when a cluster must be created),
#      PG_DB (default raftq_test), PG_PASSWORD (default postgres).
# The resulting DSN is svcd's test default:
#   host=127.0.0.1 port=5432 user=postgres password=postgres dbname=raftq_test sslmode=disable
set -euo pipefail

PG_PORT="${PG_PORT:-5432}"
PG_DB="${PG_DB:-raftq_test}"
PG_PASSWORD="${PG_PASSWORD:-postgres}"
CLUSTER=main

log() { echo "pg-start: $*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
  as_postgres() { runuser -u postgres -- "$@"; }
else
  as_root() { sudo "$@"; }
  as_postgres() { sudo -u postgres "$@"; }
fi

# 1. Install when missing.
if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq postgresql >/dev/null
fi
PG_VER="$(ls /usr/lib/postgresql | sort -n | tail -1)"

cluster_field() { # $1: column number of pg_lsclusters -h (3 port, 4 status)
  pg_lsclusters -h | awk -v v="$PG_VER" -v c="$CLUSTER" -v f="$1" '$1==v && $2==c {print $f}'
}

# 2. Create the cluster when there is none (the package usually made one).
if [ -z "$(cluster_field 2)" ]; then
  log "creating cluster $PG_VER/$CLUSTER on port $PG_PORT"
  as_root pg_createcluster "$PG_VER" "$CLUSTER" --port "$PG_PORT" >/dev/null
fi

# 3. Start it unless it is online.
case "$(cluster_field 4)" in
  online*) ;;
  *)
    log "starting cluster $PG_VER/$CLUSTER"
    as_root pg_ctlcluster "$PG_VER" "$CLUSTER" start
    ;;
esac
port="$(cluster_field 3)"

# Wait until it accepts connections.
for _ in $(seq 1 60); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$port" || { log "server on port $port is not ready"; exit 1; }

psql_pg() { as_postgres psql -p "$port" -v ON_ERROR_STOP=1 -qtAX "$@"; }

# 4. Password (setting the same value again is harmless).
psql_pg -c "ALTER USER postgres PASSWORD '${PG_PASSWORD}';" >/dev/null

# 5. Database.
if [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname = '${PG_DB}'")" != "1" ]; then
  log "creating database $PG_DB"
  psql_pg -c "CREATE DATABASE \"${PG_DB}\";" >/dev/null
fi

log "ready: host=127.0.0.1 port=$port user=postgres dbname=$PG_DB"
