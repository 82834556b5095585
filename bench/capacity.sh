#!/usr/bin/env bash
# The capacity search against `peregrine serve` on SQLite with the tutorial's 20 rows:
# `peregrine load http://…/users/ --find-capacity` with its defaults (p99<100ms, errors<1%,
# 2 s + 5 s steps from 50 req/s, 5 %, at most 3 min), for 1 worker and for all cores, with
# the answer and the search's wall time.
#
#   flock /tmp/bench.lock bash bench/capacity.sh
#   WORKERS="1 2" EXTRA="--max-duration 90s" flock /tmp/bench.lock bash bench/capacity.sh
#
# PEREGRINE names the binary (default: target/release/peregrine, built if missing). Logs
# stay in the printed directory when anything fails.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
work=$(mktemp -d -t peregrine-capacity.XXXXXX)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

need curl "apt-get install -y curl"
CORES=$(nproc)
WORKERS=${WORKERS:-1 $CORES}
EXTRA=${EXTRA:-}
PEREGRINE=${PEREGRINE:-$ROOT/target/release/peregrine}
if [ ! -x "$PEREGRINE" ]; then
    log "building $PEREGRINE"
    cargo build --release -p peregrine >"$work/build.log" 2>&1 || fail "cargo build failed (log: $work/build.log)"
fi

server_pid=
stop_everything() { stop_pid "$server_pid"; }

for workers in $WORKERS; do
    [[ "$workers" =~ ^[1-9][0-9]*$ ]] || fail "WORKERS: \"$workers\" is not a number of workers"
    port=$(free_ports 1)
    db="$work/capacity-$workers.db"
    "$PEREGRINE" serve --database-url "sqlite://$db" --bind "127.0.0.1:$port" --workers "$workers" \
        --seed 20 >"$work/serve-$workers.log" 2>&1 &
    server_pid=$!
    wait_for_http "http://127.0.0.1:$port/readyz" "$server_pid" "$work/serve-$workers.log"
    log "SQLite, $workers worker(s), machine load $(cut -d' ' -f1-3 /proc/loadavg)"
    started=$SECONDS
    # shellcheck disable=SC2086 # EXTRA is a list of flags
    "$PEREGRINE" load "http://127.0.0.1:$port/users/" --find-capacity $EXTRA \
        --report "$work/report-$workers" | tee "$work/search-$workers.txt" || true
    log "$workers worker(s): $(grep -E '^(Capacity: |No capacity)' "$work/search-$workers.txt") [wall $((SECONDS - started)) s]"
    stop_pid "$server_pid"
    server_pid=
done
