#!/usr/bin/env bash
# What durable SQLite commits cost writes: `peregrine serve` on a SQLite file with
# `--sqlite-synchronous full` (the default: each commit synced before it is acknowledged)
# and with `normal` (synced at checkpoints only), taking turns ROUNDS times, each turn
# DURATION seconds of POST /users with a fresh name per request (wrk, CONNECTIONS
# connections). Prints POST/s and the mean latency of each, and the ratio normal/full.
# Not a CI test. The file lives in TMPDIR (or BENCH_DIR): the figures are that disk's.
#
#   flock /tmp/bench.lock bash bench/sqlite-sync.sh            # DURATION=5 ROUNDS=2 CONNECTIONS=16
#   DURATION=10 ROUNDS=3 flock /tmp/bench.lock bash bench/sqlite-sync.sh
#
# Needs: wrk (apt-get install -y wrk), curl, python3, cargo. Logs stay in the printed
# directory when anything fails.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/peregrine-sqlite-sync.XXXXXX")
# shellcheck source=bench/lib.sh
source bench/lib.sh

DURATION=$(seconds "${DURATION:-5}" DURATION)
ROUNDS=${ROUNDS:-2}
[[ "$ROUNDS" =~ ^[1-9]$ ]] || fail "ROUNDS=$ROUNDS: give a whole number from 1 to 9"
CONNECTIONS=${CONNECTIONS:-16}
[[ "$CONNECTIONS" =~ ^[1-9][0-9]{0,2}$ ]] || fail "CONNECTIONS=$CONNECTIONS: give 1 to 999"
PROFILE=${PROFILE:-release}
server_pid=""
stop_everything() { stop_pid "$server_pid"; }

need wrk "apt-get install -y wrk"
need curl "apt-get install -y curl"
need python3 "apt-get install -y python3"
cargo build --profile "$PROFILE" --quiet --bin peregrine || fail "cargo build failed"
dir=$PROFILE
[ "$PROFILE" = dev ] && dir=debug
peregrine=target/$dir/peregrine
port=$(free_ports 1)
token=bench-token

# One fresh name per request: thread id, then a counter (no 409s, so every POST commits).
cat >"$work/post.lua" <<'LUA'
-- thread_id is a global that setup() sets in each thread's own Lua state.
local counter = 0
local threads = 0
function setup(thread)
    thread:set("thread_id", threads)
    threads = threads + 1
end
function request()
    counter = counter + 1
    local body = string.format('{"username":"b%d-%d"}', thread_id, counter)
    return wrk.format("POST", "/users", nil, body)
end
function done(summary, latency, requests)
    io.write(string.format("RESULT %d %d %.3f %d\n", summary.requests,
        summary.duration, latency.mean, summary.errors.status))
end
LUA

# run MODE ROUND: one turn on a fresh file; sets `r` (POST/s) and `l` (mean latency, ms).
run() {
    local mode=$1 round=$2 db="$work/$1-$2.db"
    PEREGRINE_API_TOKEN=$token "$peregrine" serve --database-url "sqlite://$db" \
        --bind "127.0.0.1:$port" --sqlite-synchronous "$mode" >"$work/server-$mode-$round.log" 2>&1 &
    server_pid=$!
    wait_for_http "http://127.0.0.1:$port/readyz" "$server_pid" "$work/server-$mode-$round.log" 30
    grep -q "synchronous=${mode^^}" "$work/server-$mode-$round.log" ||
        fail "the server did not report synchronous=${mode^^} (log: $work/server-$mode-$round.log)"
    # wrk wants at least one connection per thread.
    wrk -t "$((CONNECTIONS < 2 ? CONNECTIONS : 2))" -c "$CONNECTIONS" -d "${DURATION}s" -s "$work/post.lua" \
        -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
        "http://127.0.0.1:$port" >"$work/wrk-$mode-$round.txt" 2>&1
    stop_pid "$server_pid"
    server_pid=""
    local line
    line=$(grep '^RESULT' "$work/wrk-$mode-$round.txt") || fail "wrk printed no result ($work/wrk-$mode-$round.txt)"
    read -r _ requests micros mean errors <<<"$line"
    [ "$errors" -eq 0 ] || fail "$errors POSTs were not 2xx in $mode round $round"
    read -r r l < <(python3 -c "print(f'{$requests / ($micros / 1e6):.0f} {$mean / 1000:.2f}')")
}

log "SQLite on $(df -P "$work" | awk 'NR==2 {print $1}'), $CONNECTIONS connections, ${DURATION}s x $ROUNDS rounds each, $PROFILE build"
declare -A rate=([full]=0 [normal]=0) latency=([full]=0 [normal]=0)
for round in $(seq "$ROUNDS"); do
    order=(full normal)
    [ $((round % 2)) -eq 0 ] && order=(normal full)
    for mode in "${order[@]}"; do
        run "$mode" "$round"
        log "round $round $mode: $r POST/s, mean ${l} ms"
        rate[$mode]=$(python3 -c "print(${rate[$mode]} + $r)")
        latency[$mode]=$(python3 -c "print(${latency[$mode]} + $l)")
    done
done
python3 - "${rate[full]}" "${rate[normal]}" "${latency[full]}" "${latency[normal]}" "$ROUNDS" <<'PY'
import sys
full, normal, full_ms, normal_ms, rounds = (float(v) for v in sys.argv[1:])
print(f"{'synchronous':<12} {'POST/s':>8} {'mean ms':>8}")
print(f"{'FULL':<12} {full / rounds:>8.0f} {full_ms / rounds:>8.2f}")
print(f"{'NORMAL':<12} {normal / rounds:>8.0f} {normal_ms / rounds:>8.2f}")
print(f"NORMAL/FULL throughput ratio: {normal / full:.2f}" if full else "FULL made no POST")
PY
