#!/usr/bin/env bash
# A private PostgreSQL server for the tests (`make test` runs it; `make clean` runs it with `stop`).
#
#   scripts/postgres.sh         install Debian's postgresql if missing (as root), start the cluster
#                               in .build/postgres if it is not running, print its URL and write it
#                               to .build/postgres/url (tests/postgres_support.py reads it)
#   scripts/postgres.sh stop    stop that cluster
#
# Idempotent: a running cluster is left alone, a stale pid file (a killed server) is cleared and the
# server restarted. The cluster listens on a unix socket only (no TCP port to collide with), trusts
# local connections, and trades durability for speed (fsync off): it holds nothing but test data.
# PostgreSQL refuses to run as root, so as root the cluster belongs to the package's `postgres` user.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
URL_FILE="$ROOT/.build/postgres/url"
DATABASE=codemode_test
PORT=5432  # names the socket file only: the server opens no TCP port

postgres_bin() {
    local dirs
    dirs=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1) || true
    if [[ -n "$dirs" && -x "$dirs/postgres" ]]; then echo "$dirs"; fi
}

# Run a command as the cluster's owner: `postgres` when we are root, else ourselves.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The cluster's directory: .build/postgres, or one in /tmp when the checkout is in a directory
# the postgres user cannot enter (e.g. under /root).
cluster_dir() {
    local dir="$ROOT/.build/postgres"
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]] && ! runuser -u postgres -- test -x "$ROOT/.build"; then
        dir="/tmp/codemode-postgres-$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)"
    fi
    echo "$dir"
}

BIN=$(postgres_bin)

if [[ "${1:-}" == "stop" ]]; then
    DATA="$(cluster_dir)/data"
    if [[ -n "$BIN" && -f "$DATA/postmaster.pid" ]]; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    exit 0
fi

if [[ -z "$BIN" ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "scripts/postgres.sh: PostgreSQL is not installed; install Debian's postgresql package (or run this as root)" >&2
        exit 1
    fi
    echo "installing Debian's postgresql package for the store tests..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq postgresql >/dev/null
    BIN=$(postgres_bin)
    [[ -n "$BIN" ]] || { echo "scripts/postgres.sh: postgresql installed but no /usr/lib/postgresql/*/bin/postgres" >&2; exit 1; }
fi

DIR=$(cluster_dir)
DATA="$DIR/data"
# A unix socket path is limited to about 107 bytes: a deep checkout puts its socket in /tmp.
SOCKET_DIR="$DIR"
if (( ${#SOCKET_DIR} > 80 )); then
    SOCKET_DIR="/tmp/codemode-postgres-socket-$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)"
fi

mkdir -p "$DIR" "$SOCKET_DIR"
if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$DIR" "$SOCKET_DIR"
fi
chmod 700 "$DIR"

if [[ ! -f "$DATA/PG_VERSION" ]]; then
    rm -rf "$DATA"
    as_owner "$BIN/initdb" -D "$DATA" --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; exit 1; }
fi

url="postgresql:///$DATABASE?host=$SOCKET_DIR&port=$PORT&user=$(as_owner id -un)"

# A live process: a killed server lingers as a zombie until its parent (often pid 1) reaps it.
alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n "$state" && "$state" != Z* ]]
}

# Running: the pid file names a live server.
server_running() {
    [[ -f "$DATA/postmaster.pid" ]] && alive "$(head -n 1 "$DATA/postmaster.pid")"
}

start_server() {
    local lock="$SOCKET_DIR/.s.PGSQL.$PORT.lock"
    rm -f "$DATA/postmaster.pid"  # not running: any pid file is stale
    if [[ -f "$lock" ]] && ! alive "$(head -n 1 "$lock")"; then rm -f "$lock"; fi
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 start \
        -o "-c listen_addresses='' -c unix_socket_directories='$SOCKET_DIR' -p $PORT -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        >/dev/null 2>&1
}

if ! server_running; then
    # A killed server's backends may hold its shared memory a moment longer: retry for a while.
    for attempt in $(seq 1 20); do
        start_server && break
        if (( attempt == 20 )); then tail -n 20 "$DIR/server.log" >&2; exit 1; fi
        sleep 0.5
    done
fi

as_owner "$BIN/pg_isready" -q -h "$SOCKET_DIR" -p "$PORT" -t 60 \
    || { echo "scripts/postgres.sh: the server in $DATA does not accept connections; see $DIR/server.log" >&2; exit 1; }

if ! as_owner "$BIN/psql" -h "$SOCKET_DIR" -p "$PORT" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'" | grep -q 1; then
    as_owner "$BIN/createdb" -h "$SOCKET_DIR" -p "$PORT" "$DATABASE"
fi

printf '%s\n' "$url" >"$URL_FILE"
echo "$url"
