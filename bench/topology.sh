#!/usr/bin/env bash
# The scale-out topology on 127.0.0.1, under a steady load, through failures:
#
#   HAProxy (health-checking /readyz every 500 ms)
#     -> 3 x `peregrine serve` (1 worker each)
#          writes and readiness -> PgBouncer (transaction mode) -> PostgreSQL primary
#          reads                -> streaming replica (pg_basebackup -R), else the primary
#
# `peregrine load` sends GET /users/7 at a fixed rate through HAProxy for LOAD seconds
# (default 50) while the script, at fixed seconds: SIGTERMs instance 1 (t=8) and starts it
# again (t=14); stops the replica (t=20); restarts the primary (t=30, `pg_ctl restart -m
# fast`). It prints requests and errors per second with the events, then the totals.
#
#   bash bench/topology.sh                  # about 70 s
#   RATE=500 LOAD=40 bash bench/topology.sh
#
# Needs: haproxy and pgbouncer (apt-get install -y haproxy pgbouncer), PostgreSQL's
# programs, curl, and target/release/peregrine (built with `cargo build --release` when
# missing; PEREGRINE=path picks another binary). Everything lives in a temporary
# directory, removed after a successful run and kept after a failure; everything started
# is stopped by pid.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
work=$(mktemp -d -t peregrine-topology.XXXXXX)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

RATE=${RATE:-300}
LOAD=$(seconds "${LOAD:-50}" LOAD)
[ "$LOAD" -ge 40 ] || fail "LOAD=$LOAD: give at least 40 seconds, the events happen until t=30"
[[ "$RATE" =~ ^[0-9]+$ ]] && [ "$RATE" -ge 1 ] && [ "$RATE" -le 20000 ] ||
    fail "RATE=$RATE: give a whole number of requests per second from 1 to 20000"
need haproxy "apt-get install -y haproxy"
need curl "apt-get install -y curl"
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$PGBOUNCER" ] || fail "pgbouncer is not installed: apt-get install -y pgbouncer"
PGBIN=$(pg_bindir)
PEREGRINE=${PEREGRINE:-$ROOT/target/release/peregrine}
if [ ! -x "$PEREGRINE" ]; then
    log "building target/release/peregrine"
    cargo build --release -q -p peregrine
fi

{
    read -r PRIMARY_PORT
    read -r REPLICA_PORT
    read -r BOUNCER_PORT
    read -r HAPROXY_PORT
    read -r API1
    read -r API2
    read -r API3
} < <(free_ports 7)
APIS=("$API1" "$API2" "$API3")
api_pids=("" "" "")
haproxy_pid="" bouncer_pid="" load_pid=""

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_everything() {
    stop_pid "$load_pid"
    for pid in "${api_pids[@]}"; do stop_pid "$pid"; done
    stop_pid "$haproxy_pid"
    [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null
    stop_pid "$bouncer_pid"
    for cluster in replica primary; do
        [ -f "$work/$cluster/postmaster.pid" ] &&
            as_postgres "$PGBIN/pg_ctl" -D "$work/$cluster" -m immediate -w stop >/dev/null 2>&1
    done
    return 0
}

# start_cluster NAME PORT: pg_ctl start with the settings the tests use.
start_cluster() {
    as_postgres "$PGBIN/pg_ctl" -D "$work/$1" -w -t 60 -l "$work/$1.log" \
        -o "-p $2 -h 127.0.0.1 -k $work -c fsync=off -c max_connections=100" start >/dev/null
}

log "PostgreSQL primary on :$PRIMARY_PORT, replica on :$REPLICA_PORT"
chmod 755 "$work"
[ "$(id -u)" -eq 0 ] && chown postgres "$work"
as_postgres "$PGBIN/initdb" --auth=trust -U postgres --no-sync -D "$work/primary" >/dev/null
start_cluster primary "$PRIMARY_PORT"
as_postgres "$PGBIN/pg_basebackup" -R -X stream --checkpoint=fast --no-sync \
    -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$work/replica"
start_cluster replica "$REPLICA_PORT"

log "PgBouncer on :$BOUNCER_PORT (transaction mode, 10 server connections)"
cat >"$work/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$PRIMARY_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = 10
max_client_conn = 500
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
; after a failed server login PgBouncer turns clients away for this long (default 15 s)
server_login_retry = 1
EOF
echo '"postgres" ""' >"$work/userlist.txt"
[ "$(id -u)" -eq 0 ] && chown postgres "$work/pgbouncer.ini" "$work/userlist.txt"
as_postgres "$PGBOUNCER" "$work/pgbouncer.ini" >/dev/null 2>&1 &
bouncer_pid=$!

PRIMARY=postgres://postgres@127.0.0.1:$PRIMARY_PORT/postgres
"$PEREGRINE" db init --database-url "$PRIMARY" 2>>"$work/init.log"
"$PEREGRINE" db seed --users 1000 --database-url "$PRIMARY" >/dev/null 2>>"$work/init.log"

# start_api N: instance N (0-based) through PgBouncer, reading from the replica.
start_api() {
    DATABASE_URL=postgres://postgres@127.0.0.1:$BOUNCER_PORT/postgres \
        PEREGRINE_DATABASE_READ_URL=postgres://postgres@127.0.0.1:$REPLICA_PORT/postgres \
        "$PEREGRINE" serve --bind "127.0.0.1:${APIS[$1]}" --workers 1 --db-timeout 2s \
        --shutdown-grace 2s --shutdown-timeout 5s 2>>"$work/api$1.log" &
    api_pids[$1]=$!
    wait_for_http "http://127.0.0.1:${APIS[$1]}/readyz" "${api_pids[$1]}" "$work/api$1.log"
}
for n in 0 1 2; do start_api "$n"; done

log "HAProxy on :$HAPROXY_PORT in front of :$API1 :$API2 :$API3"
cat >"$work/haproxy.cfg" <<EOF
global
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 2
    option redispatch
    retry-on conn-failure empty-response
frontend api
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend peregrine
backend peregrine
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 1 rise 2
    server a 127.0.0.1:$API1 check
    server b 127.0.0.1:$API2 check
    server c 127.0.0.1:$API3 check
EOF
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!
wait_for_http "http://127.0.0.1:$HAPROXY_PORT/users/7" "$haproxy_pid" "$work/haproxy.log"

log "load: GET /users/7 at $RATE req/s for ${LOAD}s"
"$PEREGRINE" load "http://127.0.0.1:$HAPROXY_PORT/users/7" --rate "$RATE" -c 64 \
    --hold-for "${LOAD}s" --timeout 5s --report "$work/report" >"$work/load.out" 2>"$work/load.log" &
load_pid=$!
started=$SECONDS
at() { while [ $((SECONDS - started)) -lt "$1" ]; do sleep 0.1; done; }
events=()
note() {
    events+=("$((SECONDS - started)) $*")
    log "t=$((SECONDS - started))s $*"
}

at 8
note "SIGTERM instance 1"
stop_pid "${api_pids[0]}"
at 14
note "instance 1 started again"
start_api 0
at 20
note "replica stopped"
as_postgres "$PGBIN/pg_ctl" -D "$work/replica" -m fast -w stop >/dev/null
at 30
note "primary restarting"
as_postgres "$PGBIN/pg_ctl" -D "$work/primary" -w -t 60 -l "$work/primary.log" -m fast \
    -o "-p $PRIMARY_PORT -h 127.0.0.1 -k $work -c fsync=off -c max_connections=100" restart >/dev/null
note "primary accepting connections again"
wait "$load_pid" || true
load_pid=""

timeline=$work/report/timeline.csv
[ -s "$timeline" ] || fail "peregrine load wrote no timeline (log: $work/load.log)"
echo
echo "second  requests  errors  event"
tail -n +2 "$timeline" | while IFS=, read -r second _ requests errors _; do
    event=""
    for line in "${events[@]}"; do
        [ "${line%% *}" = "$second" ] && event+="${line#* }; "
    done
    printf '%6s  %8s  %6s  %s\n' "$second" "$requests" "$errors" "${event%; }"
done
awk -F, 'NR > 1 { r += $3; e += $4 } END { printf "\ntotal: %d requests, %d errors (%.2f %%)\n", r, e, r ? 100 * e / r : 0 }' "$timeline"
python3 - "$work/report/report.json" <<'PY'
import json, sys
overall = json.load(open(sys.argv[1])).get("overall", {})
codes = overall.get("codes") or {}
print("responses by status:", ", ".join(f"{code}: {n}" for code, n in sorted(codes.items())) or "none")
PY
