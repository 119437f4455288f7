#!/usr/bin/env bash
# Install (Debian's package) and start a throw-away PostgreSQL for the storage tests, then print
# its URL on stdout (everything else goes to stderr):
#
#   export JOURNEYMAP_TEST_POSTGRES_URL="$(bash .ci/postgres.sh)"
#
# The cluster lives in $JM_PG_DIR (default /tmp/journeymap-pg), listens on 127.0.0.1 only
# (port $JM_PG_PORT, default 54329) and trusts local connections: it holds test data only.
# Running the script again reuses a running cluster. Needs root (CI machines are root).
set -euo pipefail

PORT="${JM_PG_PORT:-54329}"
DIR="${JM_PG_DIR:-/tmp/journeymap-pg}"
DB=journeymap_test
URL="postgresql+psycopg://postgres@127.0.0.1:${PORT}/${DB}"

log() { echo "postgres.sh: $*" >&2; }

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  log "installing postgresql (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
BIN="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")"

as_pg() { runuser -u postgres -- "$@"; }

if ! as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  if [ ! -s "$DIR/PG_VERSION" ]; then
    log "creating a cluster in $DIR"
    mkdir -p "$DIR"
    chown postgres:postgres "$DIR"
    as_pg "$BIN/initdb" -D "$DIR" -A trust -U postgres -E UTF8 --no-locale >&2
  fi
  log "starting on 127.0.0.1:$PORT"
  # fsync stays on: the tests check durability claims, not only results.
  as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k /tmp -c max_connections=200" start >&2
fi
if ! as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
  as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB"
fi
echo "$URL"
