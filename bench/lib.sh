# Shared by the bench scripts (sourced, not run): loud failures that keep their logs, free
# ports, finding PostgreSQL's programs as the tests do, and waiting for a server to answer.
#
# A script sets `work` (its scratch directory) before sourcing this file and defines
# `stop_everything` (stops what it started, by pid); the EXIT trap calls it, then removes
# `work` only when the run succeeded.

bench_failed=0

# Replaced by the script once it has started something.
stop_everything() { :; }

log() { echo "[$(basename "$0" .sh)] $*" >&2; }

# fail MESSAGE…: says why, keeps the logs, exits 1.
fail() {
    echo "error: $*" >&2
    bench_failed=1
    exit 1
}

# The ERR trap: names the command that failed instead of exiting silently (e.g. 127 for a
# program that is not installed).
on_error() {
    local status=$1 line=$2 command=$3
    echo "error: $(basename "$0") line $line: \`$command\` failed with exit status $status" >&2
    [ "$status" -eq 127 ] && echo "       (exit status 127: a program was not found)" >&2
    bench_failed=1
}

on_exit() {
    local status=$?
    trap - ERR
    stop_everything || true
    if [ "$status" -ne 0 ] || [ "$bench_failed" -ne 0 ]; then
        if rmdir "$work" 2>/dev/null; then
            echo "error: $(basename "$0") failed (exit status $status) before writing any log" >&2
        else
            echo "error: $(basename "$0") failed (exit status $status); its logs are kept in $work:" >&2
            ls -l "$work" >&2 2>/dev/null || true
        fi
    else
        rm -rf "$work"
    fi
}

trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
trap on_exit EXIT

# need PROGRAM HOW-TO-INSTALL: fails up front when PROGRAM is missing.
need() {
    command -v "$1" >/dev/null 2>&1 || fail "$1 is not installed: $2"
}

# free_ports N: N distinct free TCP ports on 127.0.0.1, one a line (held open together
# while chosen, so they differ).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in sockets))
PY
}

# pg_bindir: PostgreSQL's program directory, found as the tests find it (`pg_config
# --bindir`, else the newest /usr/lib/postgresql/*/bin).
pg_bindir() {
    local dir
    if dir=$(pg_config --bindir 2>/dev/null) && [ -x "$dir/initdb" ]; then
        echo "$dir"
        return
    fi
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -1)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] ||
        fail "PostgreSQL's programs (initdb, pg_ctl, psql, pgbench) were not found through \`pg_config --bindir\` or under /usr/lib/postgresql/*/bin: apt-get install -y postgresql"
    echo "$dir"
}

# wait_for_http URL PID LOG [SECONDS]: until URL answers 2xx; fails with the log's tail
# when PID exits first or time runs out.
wait_for_http() {
    local url=$1 pid=$2 server_log=$3 limit=${4:-60}
    local deadline=$((SECONDS + limit))
    until curl -fs -o /dev/null --max-time 2 "$url"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$server_log" >&2 || true
            fail "the server for $url exited before answering (log: $server_log)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$server_log" >&2 || true
            fail "$url did not answer within ${limit}s (log: $server_log)"
        fi
        sleep 0.2
    done
}

# stop_pid PID: SIGTERM, then waits up to 30 s for it to exit.
stop_pid() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
}

# seconds VALUE NAME: a whole number of seconds from `15` or `15s`, else fails naming NAME.
seconds() {
    local value=${1%s}
    [[ "$value" =~ ^[0-9]+$ ]] && [ "$value" -gt 0 ] ||
        fail "$2=$1: give a whole number of seconds, e.g. $2=15 or $2=15s"
    echo "$value"
}

# PostgreSQL refuses to run as root: its programs run as the `postgres` user then.
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_postgres: a private cluster in $work/pg on $PGPORT (programs from $PGBIN), with the
# tutorial's database and user (password auth); sets pg_started for stop_postgres.
start_postgres() {
    log "starting PostgreSQL ($PGBIN) on 127.0.0.1:$PGPORT"
    mkdir -p "$work/pg"
    if [ "$(id -u)" -eq 0 ]; then
        chmod 755 "$work"
        chown postgres "$work/pg"
    fi
    as_postgres "$PGBIN/initdb" -D "$work/pg/data" -U postgres -E UTF8 --locale=C --no-sync \
        --auth-local=trust --auth-host=scram-sha-256 >"$work/initdb.log" 2>&1 ||
        fail "initdb failed (log: $work/initdb.log): $(tail -n 3 "$work/initdb.log")"
    as_postgres "$PGBIN/pg_ctl" -D "$work/pg/data" -l "$work/pg/postgres.log" -w -t 60 start \
        -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $work/pg -c max_connections=200" >/dev/null ||
        fail "PostgreSQL did not start (log: $work/pg/postgres.log): $(tail -n 3 "$work/pg/postgres.log" 2>/dev/null)"
    pg_started=1
    superuser_sql postgres "CREATE ROLE orguser LOGIN PASSWORD '123456'"
    superuser_sql postgres "CREATE DATABASE orgdb OWNER orguser"
}

# superuser_sql DB SQL: runs SQL as `postgres` over the cluster's socket (trusted).
superuser_sql() {
    as_postgres "$PGBIN/psql" -h "$work/pg" -p "$PGPORT" -U postgres -d "$1" -v ON_ERROR_STOP=1 -qAt -c "$2"
}

# stop_postgres: stops the cluster start_postgres started, if it did.
stop_postgres() {
    if [ -n "${pg_started:-}" ]; then
        as_postgres "$PGBIN/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1 || true
        pg_started=""
    fi
}

# tutorial_settings: PGBIN (PostgreSQL's programs), and PGPASSWORD and DB_URL for the
# tutorial's user on the cluster start_postgres starts on $PGPORT.
tutorial_settings() {
    PGBIN=$(pg_bindir)
    export PGPASSWORD=123456
    DB_URL="postgres://orguser:$PGPASSWORD@127.0.0.1:$PGPORT/orgdb"
}

# one_server_on_postgres: for a script that runs one server (its pid in server_pid) on the
# tutorial's private database: free ports PGPORT and PORT, tutorial_settings, and a
# stop_everything that stops the server and the cluster.
one_server_on_postgres() {
    { read -r PGPORT; read -r PORT; } < <(free_ports 2)
    tutorial_settings
    server_pid=""
    stop_everything() {
        stop_pid "$server_pid"
        stop_postgres
    }
}

# tutorial_database PEREGRINE: a private cluster (start_postgres) whose orgdb has Peregrine's
# schema, created by the PEREGRINE binary's `db init` over $DB_URL; then users_up_to.
tutorial_database() {
    start_postgres
    "$1" db init --database-url "$DB_URL" >"$work/init.log" 2>&1 ||
        fail "peregrine db init failed: $(tail -n 3 "$work/init.log")"
}

# users_up_to N: the table holds ids 1..N (names like the tutorial's: short, distinct).
users_up_to() {
    superuser_sql orgdb "INSERT INTO orguser (username) SELECT 'user-' || substr(md5(g::text), 1, 10) FROM generate_series((SELECT count(*) FROM orguser) + 1, $1) g; ANALYZE orguser"
}
