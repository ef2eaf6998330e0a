#!/usr/bin/env bash
# A real Unleash (unleash-server 7.5.1 on PostgreSQL 15) for local use and the tests.
#
#   unleash.sh start        install what is missing, start PostgreSQL and Unleash, wait for /health,
#                           print the DIACHRONIC_* variables as `export NAME=value` lines (stdout only)
#   unleash.sh stop         stop Unleash and PostgreSQL (the data stays)
#   unleash.sh status       exit 0 if Unleash answers /health GOOD, 1 otherwise
#   unleash.sh env          print the export lines of the running instance
#   unleash.sh stop-node    stop only the Unleash process (fault tests: "Unleash is down")
#   unleash.sh run CMD...   run CMD against a private, fresh instance (own folder and ports), removed afterwards
#
# Everything lives in <data dir>/unleash (DIACHRONIC_DATA_DIR, default .diachronic in the repository):
# secrets (fixed per data folder: Unleash applies INIT_*_API_TOKENS only to a database without tokens),
# state.env (the export lines), ports, node.pid, node.log and the PostgreSQL data folder `pg` (with its
# unix socket and server.log). PostgreSQL refuses to run as root, so as root it runs as the `postgres` user;
# if that user cannot reach the data folder (e.g. a clone under a private mktemp folder) the PostgreSQL data
# goes to /tmp/diachronic-unleash-<hash>/pg instead. Progress goes to stderr; background processes are fully
# detached (setsid + nohup, logs to files), so `make` returns.
#
# Ports: DIACHRONIC_UNLEASH_PORT (default 4242) and DIACHRONIC_UNLEASH_PG_PORT (default 5433); a port held
# by something else is skipped for the next free one, and the one used is remembered for restarts.
# DIACHRONIC_UNLEASH_DIR overrides the instance folder (the tests use it to control `run`'s private instance).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

UNLEASH_VERSION="7.5.1"
PG_BIN="${DIACHRONIC_PG_BIN:-/usr/lib/postgresql/15/bin}"
DATA_DIR="${DIACHRONIC_DATA_DIR:-.diachronic}"
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$ROOT/$DATA_DIR" ;; esac
UD="${DIACHRONIC_UNLEASH_DIR:-$DATA_DIR/unleash}"
case "$UD" in /*) ;; *) UD="$ROOT/$UD" ;; esac
PROJECT="${DIACHRONIC_UNLEASH_PROJECT:-default}"
ENVIRONMENT="${DIACHRONIC_UNLEASH_ENVIRONMENT:-development}"
HEALTH_TIMEOUT_S="${DIACHRONIC_UNLEASH_START_TIMEOUT_S:-90}"

log() { printf '[unleash] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# Run a command line as the PostgreSQL owner: `postgres` when we are root, ourselves otherwise.
as_pg() {
    if is_root; then
        (cd / && su postgres -s /bin/sh -c "$1")  # from /: the caller's folder may be closed to postgres
    else
        sh -c "$1"
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first free port from $1 on (the one remembered in $2's file wins if it is free).
pick_port() {
    local want="$1" remembered="${2:-}" p
    if [ -n "$remembered" ] && ! port_in_use "$remembered"; then echo "$remembered"; return; fi
    for p in $(seq "$want" $((want + 50))); do
        if ! port_in_use "$p"; then echo "$p"; return; fi
    done
    die "no free port in $want..$((want + 50))"
}

remembered() { [ -f "$UD/ports" ] && sed -n "s/^$1=//p" "$UD/ports" | head -1 || true; }

# -- installation ----------------------------------------------------------------------------------------

ensure_postgres() {
    [ -x "$PG_BIN/initdb" ] && return
    is_root || die "PostgreSQL 15 is missing ($PG_BIN): install it with 'apt-get install -y postgresql'"
    log "installing PostgreSQL 15 (apt-get install -y postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q postgresql >&2 || { apt-get update -q >&2 && apt-get install -y -q postgresql >&2; }
    [ -x "$PG_BIN/initdb" ] || die "PostgreSQL 15 binaries still missing at $PG_BIN"
}

ensure_node_modules() {
    command -v node >/dev/null || die "Node.js 20 is required (node not found)"
    local stamp="node_modules/.diachronic-installed"
    if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ] && [ -f node_modules/unleash-server/package.json ]; then
        return
    fi
    log "installing unleash-server $UNLEASH_VERSION (npm ci, from package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error >&2
    touch "$stamp"
}

# -- secrets and data folders ----------------------------------------------------------------------------

pg_data_dir() {
    if is_root && ! su postgres -s /bin/sh -c "test -x '$UD'" 2>/dev/null; then
        echo "/tmp/diachronic-unleash-$(printf '%s' "$UD" | sha1sum | cut -c1-12)/pg"
    else
        echo "$UD/pg"
    fi
}

new_secret() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

RESET_DB=0
load_secrets() {
    if [ ! -f "$UD/secrets" ]; then
        # New secrets only reach Unleash through a database without tokens: start that database afresh.
        [ -f "$PGDATA/PG_VERSION" ] && RESET_DB=1
        (umask 077 && printf 'ADMIN_SECRET=%s\nCLIENT_SECRET=%s\n' "$(new_secret)" "$(new_secret)" >"$UD/secrets")
    fi
    ADMIN_SECRET="$(sed -n 's/^ADMIN_SECRET=//p' "$UD/secrets")"
    CLIENT_SECRET="$(sed -n 's/^CLIENT_SECRET=//p' "$UD/secrets")"
    [ -n "$ADMIN_SECRET" ] && [ -n "$CLIENT_SECRET" ] || die "$UD/secrets is damaged: remove it (and $PGDATA)"
    ADMIN_TOKEN="*:*.$ADMIN_SECRET"
    CLIENT_TOKEN="$PROJECT:$ENVIRONMENT.$CLIENT_SECRET"
}

# -- PostgreSQL -------------------------------------------------------------------------------------------

pg_running() { [ -f "$PGDATA/postmaster.pid" ] && as_pg "'$PG_BIN/pg_ctl' -D '$PGDATA' status" >/dev/null 2>&1; }

pg_port_of_running() { sed -n 4p "$PGDATA/postmaster.pid"; }

start_postgres() {
    mkdir -p "$(dirname "$PGDATA")"
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
        log "creating the PostgreSQL data folder $PGDATA"
        rm -rf "$PGDATA"
        mkdir -p "$PGDATA"
        if is_root; then chown postgres: "$PGDATA"; fi
        chmod 700 "$PGDATA"
        as_pg "'$PG_BIN/initdb' -D '$PGDATA' -U postgres --auth=trust -E UTF8 --no-sync" >"$UD/initdb.log" 2>&1 \
            || { cat "$UD/initdb.log" >&2; die "initdb failed"; }
    fi
    if pg_running; then
        PG_PORT="$(pg_port_of_running)"
        return
    fi
    PG_PORT="$(pick_port "${DIACHRONIC_UNLEASH_PG_PORT:-5433}" "$(remembered PG_PORT)")"
    # The unix socket lives in the data folder when its path fits the 107-byte limit; TCP is what we use.
    local sock="$PGDATA"
    [ ${#sock} -gt 90 ] && sock=""
    local pglog="$PGDATA/server.log"  # inside the data folder: always writable by its owner
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_pg "'$PG_BIN/pg_ctl' -D '$PGDATA' -l '$pglog' -w -t 60 -o \"-p $PG_PORT -k '$sock' -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off\" start" >/dev/null \
        || { tail -20 "$pglog" >&2 || true; die "PostgreSQL did not start"; }
}

psql_q() { "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAq -v ON_ERROR_STOP=1 "$@"; }

ensure_database() {
    if [ "$RESET_DB" = 1 ]; then
        log "new secrets: recreating the unleash database"
        psql_q -c "DROP DATABASE IF EXISTS unleash" >/dev/null
    fi
    if [ "$(psql_q -c "SELECT 1 FROM pg_database WHERE datname = 'unleash'")" != 1 ]; then
        psql_q -c "CREATE DATABASE unleash" >/dev/null
    fi
}

stop_postgres() {
    [ -n "${PGDATA:-}" ] && [ -f "$PGDATA/postmaster.pid" ] || return 0
    if pg_running; then
        log "stopping PostgreSQL"
        as_pg "'$PG_BIN/pg_ctl' -D '$PGDATA' -m fast -w -t 60 stop" >/dev/null 2>&1 || true
    fi
}

# -- Unleash ----------------------------------------------------------------------------------------------

# The pid of our Unleash process, if it runs: a pid file left by a dead process may name another process by now.
node_pid() {
    local pid
    [ -f "$UD/node.pid" ] || return 1
    pid="$(cat "$UD/node.pid")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/cmdline" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "scripts/unleash/server.mjs"; then
        return 1
    fi
    echo "$pid"
}

# /health is GOOD *and* our admin token is accepted: another Unleash on the same machine (another checkout) may
# have taken the port while ours was down, and it must never be mistaken for ours.
healthy() {
    curl -fsS -m 2 "http://127.0.0.1:$1/health" 2>/dev/null | grep -q '"GOOD"' || return 1
    curl -fsS -m 5 -o /dev/null -H "Authorization: $ADMIN_TOKEN" \
        "http://127.0.0.1:$1/api/admin/search/features?limit=1" 2>/dev/null
}

start_node() {
    local pid attempt
    if pid="$(node_pid)"; then
        HTTP_PORT="$(remembered HTTP_PORT)"
        if [ -n "$HTTP_PORT" ] && healthy "$HTTP_PORT"; then return; fi
        log "Unleash (pid $pid) does not answer; restarting it"
        stop_node
    fi
    # A port found free can be taken before Unleash binds it (another checkout starting too): then try the next.
    for attempt in 1 2 3; do
        HTTP_PORT="$(pick_port "${DIACHRONIC_UNLEASH_PORT:-4242}" "$(remembered HTTP_PORT)")"
        printf 'PG_PORT=%s\nHTTP_PORT=%s\n' "$PG_PORT" "$HTTP_PORT" >"$UD/ports"
        if launch_node; then return; fi
        grep -q EADDRINUSE "$UD/node.log" || break
        log "port $HTTP_PORT was taken meanwhile; trying another"
        printf 'PG_PORT=%s\n' "$PG_PORT" >"$UD/ports"  # forget it
    done
    tail -30 "$UD/node.log" >&2 || true
    die "unleash-server did not start (log: $UD/node.log)"
}

launch_node() {
    log "starting unleash-server $UNLEASH_VERSION on http://127.0.0.1:$HTTP_PORT"
    rm -f "$UD/node.pid"
    UNLEASH_PG_PORT="$PG_PORT" UNLEASH_HTTP_PORT="$HTTP_PORT" UNLEASH_PID_FILE="$UD/node.pid" \
        INIT_ADMIN_API_TOKENS="$ADMIN_TOKEN" INIT_BACKEND_API_TOKENS="$CLIENT_TOKEN" \
        SEND_TELEMETRY=false CHECK_VERSION=false TZ=UTC NODE_ENV=production \
        setsid nohup node "$ROOT/scripts/unleash/server.mjs" >"$UD/node.log" 2>&1 </dev/null &
    local launcher=$! waited=0
    until healthy "$HTTP_PORT"; do
        kill -0 "$launcher" 2>/dev/null || return 1  # it exited during start-up
        if [ "$waited" -ge $((HEALTH_TIMEOUT_S * 5)) ]; then
            kill "$launcher" 2>/dev/null || true
            log "unleash-server did not report /health GOOD within ${HEALTH_TIMEOUT_S}s"
            return 1
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    [ -f "$UD/node.pid" ] || echo "$launcher" >"$UD/node.pid"
}

stop_node() {
    local pid i
    pid="$(node_pid)" || { rm -f "$UD/node.pid"; return 0; }
    log "stopping Unleash (pid $pid)"
    kill -CONT "$pid" 2>/dev/null || true  # a paused process (fault tests) must be able to exit
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    rm -f "$UD/node.pid"
}

write_state() {
    (umask 077 && cat >"$UD/state.env" <<EOF
export DIACHRONIC_FLAGS=unleash
export DIACHRONIC_UNLEASH_URL=http://127.0.0.1:$HTTP_PORT
export DIACHRONIC_UNLEASH_ADMIN_TOKEN='$ADMIN_TOKEN'
export DIACHRONIC_UNLEASH_CLIENT_TOKEN='$CLIENT_TOKEN'
export DIACHRONIC_UNLEASH_PROJECT=$PROJECT
export DIACHRONIC_UNLEASH_ENVIRONMENT=$ENVIRONMENT
EOF
    )
}

# -- commands ---------------------------------------------------------------------------------------------

cmd_start() {
    mkdir -p "$UD"
    ensure_postgres
    ensure_node_modules
    PGDATA="$(pg_data_dir)"
    load_secrets
    start_postgres
    if [ "$RESET_DB" = 1 ]; then stop_node; fi
    ensure_database
    start_node
    write_state
    log "ready: Unleash on http://127.0.0.1:$HTTP_PORT, PostgreSQL on 127.0.0.1:$PG_PORT ($PGDATA)"
}

cmd_stop() {
    [ -d "$UD" ] || return 0
    PGDATA="$(pg_data_dir)"
    stop_node
    stop_postgres
    rm -f "$UD/state.env"
}

# The end of the logs of an instance about to be removed, for a failed run.
show_logs() {
    local pgdata
    pgdata="$(pg_data_dir)"
    for f in "$UD/node.log" "$pgdata/server.log"; do
        [ -s "$f" ] || continue
        log "last lines of $f:"
        tail -15 "$f" >&2 || true
    done
}

remove_instance() {
    local pgdata
    pgdata="$(pg_data_dir)"
    case "$pgdata" in "$UD"/*) ;; *) rm -rf "$(dirname "$pgdata")" ;; esac  # the /tmp fallback
    rm -rf "$UD"
}

cmd_status() {
    local port
    node_pid >/dev/null || return 1
    [ -f "$UD/secrets" ] || return 1
    ADMIN_TOKEN="*:*.$(sed -n 's/^ADMIN_SECRET=//p' "$UD/secrets")"
    port="$(remembered HTTP_PORT)"
    [ -n "$port" ] && healthy "$port"
}

case "${1:-}" in
    start)
        cmd_start
        cat "$UD/state.env"
        ;;
    stop) cmd_stop ;;
    status)
        if cmd_status; then log "running: http://127.0.0.1:$(remembered HTTP_PORT)"; else log "not running"; exit 1; fi
        ;;
    env)
        cmd_status || die "Unleash is not running: make unleash"
        cat "$UD/state.env"
        ;;
    stop-node) stop_node ;;
    run)
        shift
        [ $# -gt 0 ] || die "usage: $0 run CMD..."
        # A private instance for this run: a fresh database, its own ports, nothing shared with `make unleash`'s
        # instance or with another run going on at the same time; removed afterwards.
        # Its folder reaches the tests as DIACHRONIC_TEST_UNLEASH_DIR, a name this script does not read, so that
        # an unleash.sh started by the tests themselves (their own instance) is not redirected to this one.
        UD="$DATA_DIR/unleash-run-$$"
        export DIACHRONIC_TEST_UNLEASH_DIR="$UD"
        DIACHRONIC_UNLEASH_PORT="${DIACHRONIC_UNLEASH_PORT:-14242}"
        DIACHRONIC_UNLEASH_PG_PORT="${DIACHRONIC_UNLEASH_PG_PORT:-15433}"
        # Stop and remove it whatever happens next (a failed start included).
        trap 'rc=$?; trap - EXIT; [ $rc = 0 ] || show_logs; cmd_stop || true; remove_instance; exit $rc' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        cmd_start
        # In the background, so that a signal reaches the command at once (bash runs traps only between
        # commands); stdin is passed on explicitly.
        "$@" <&0 &
        child=$!
        trap 'kill -INT "$child" 2>/dev/null || true' INT
        trap 'kill -TERM "$child" 2>/dev/null || true' TERM
        rc=0
        while :; do
            rc=0
            wait "$child" || rc=$?
            kill -0 "$child" 2>/dev/null || break  # still running: wait was cut short by a signal
        done
        exit $rc
        ;;
    *)
        sed -n '2,12p' "$0" >&2
        exit 2
        ;;
esac
