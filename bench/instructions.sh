#!/usr/bin/env bash
# Instructions per request, exactly: `peregrine serve` and the yardstick (bench/minimal) each
# run under callgrind (valgrind) with one worker thread on a private PostgreSQL with the
# tutorial's 20 rows; wrk drives each route, and only that stretch is counted
# (`callgrind_control` switches counting on and off). Unlike req/s or CPU time, the count
# does not move with other load on the machine, so it settles small differences; it covers
# the server's own user-space work (not the kernel's, PostgreSQL's or wrk's).
#
#   bash bench/instructions.sh                    # ROUTES="/users/7 /users/"
#   ROUTES="/users/?limit=100" bash bench/instructions.sh
#   SERVERS=peregrine SERVE_ARGS="--cors-origin *" bash bench/instructions.sh  # with CORS
#   SERVERS=peregrine WRK_HEADER="Connection: keep-alive, x-not-plain" bash bench/instructions.sh
#                         # requests the front hands to hyper's path (wrk drops a
#                         # Content-Length header of its own accord)
#
# Writes each profile into OUT (default ./instructions-out) for `callgrind_annotate
# --inclusive=yes FILE`. Needs: valgrind (apt-get install -y valgrind), wrk, PostgreSQL's
# programs, python3, curl, cargo.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
work=$(mktemp -d -t peregrine-instructions.XXXXXX)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

ROUTES=${ROUTES:-/users/7 /users/}
SERVERS=${SERVERS:-minimal peregrine}
read -ra serve_args <<<"${SERVE_ARGS:-}"
WRK_HEADER=${WRK_HEADER:-}
wrk_header=()
[ -n "$WRK_HEADER" ] && wrk_header=(-H "$WRK_HEADER")
DURATION=$(seconds "${DURATION:-3}" DURATION)
OUT=${OUT:-$ROOT/instructions-out}
need valgrind "apt-get install -y valgrind"
need callgrind_control "apt-get install -y valgrind"
need wrk "apt-get install -y wrk"
need python3 "apt-get install -y python3"
need curl "apt-get install -y curl"
one_server_on_postgres

log "building peregrine (profiling profile) and the yardstick (release)"
cargo build --profile profiling --quiet --bin peregrine || fail "cargo build --profile profiling failed"
cargo build --release --quiet -p peregrine-bench-minimal --bin minimal-server || fail "cargo build --release failed"
tutorial_database "$ROOT/target/profiling/peregrine"
users_up_to 20
mkdir -p "$OUT"

# count SERVER: starts it under callgrind, counts each route, prints one line per route.
count() {
    local server=$1 route name requests total
    local profile="$work/$server.callgrind"
    if [ "$server" = peregrine ]; then
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$profile" \
            "$ROOT/target/profiling/peregrine" serve --bind "127.0.0.1:$PORT" --database-url "$DB_URL" \
            --workers 1 "${serve_args[@]}" >"$work/$server.log" 2>&1 &
    else
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$profile" \
            "$ROOT/target/release/minimal-server" "127.0.0.1:$PORT" \
            "host=127.0.0.1 port=$PGPORT user=orguser password=123456 dbname=orgdb" 1 \
            >"$work/$server.log" 2>&1 &
    fi
    server_pid=$!
    wait_for_http "http://127.0.0.1:$PORT/users/7" "$server_pid" "$work/$server.log" 120
    local dump=0
    for route in $ROUTES; do
        wrk -t1 -c20 -d2s "${wrk_header[@]}" "http://127.0.0.1:$PORT$route" >/dev/null 2>&1 || true
        callgrind_control -i on "$server_pid" >/dev/null 2>&1
        wrk -t1 -c20 -d"${DURATION}s" "${wrk_header[@]}" "http://127.0.0.1:$PORT$route" >"$work/wrk.out" 2>&1 || true
        callgrind_control -i off "$server_pid" >/dev/null 2>&1
        callgrind_control -d "$server_pid" >/dev/null 2>&1
        callgrind_control -z "$server_pid" >/dev/null 2>&1
        dump=$((dump + 1))
        requests=$(grep -o '[0-9]* requests in' "$work/wrk.out" | cut -d' ' -f1)
        [ -n "$requests" ] && [ "$requests" -gt 0 ] || fail "wrk sent no request to $server $route: $(head -c 300 "$work/wrk.out")"
        total=$(awk '/^totals:/ {print $2}' "$profile.$dump")
        name=$(echo "$route" | tr '/?=&' '____')
        cp "$profile.$dump" "$OUT/$server$name.callgrind"
        printf '%-10s %-22s %8d requests %10d instructions per request\n' \
            "$server" "$route" "$requests" "$((total / requests))"
    done
    stop_pid "$server_pid"
    server_pid=""
}

log "counting (each server runs about 50 times slower under valgrind)"
for server in $SERVERS; do
    count "$server"
done
log "profiles: $OUT (callgrind_annotate --inclusive=yes FILE)"
