#!/usr/bin/env bash
# Two local shards (`peregrine load --shard I/2`, started together with --start-at, then
# `peregrine report merge`) against one unsharded run of the same plan: the same local
# `peregrine serve` (SQLite, 20 users), the same total users, GET /users/. Prints total
# req/s and p50/p99 of both and the ratio merged / single; issue #12's target is a merged
# req/s within 10 % of one process. On one machine the shards, the single run and the server
# all share its cores: shards on separate machines scale further. Not a CI test.
#
#   bash bench/shards.sh                  # USERS=50 DURATION=15 ROUNDS=1 by default
#   USERS=100 DURATION=20 ROUNDS=2 bash bench/shards.sh
#
# Needs: python3, curl. The server runs on a free port; a failure names its cause and keeps
# the logs.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d -t peregrine-shards.XXXXXX)
# shellcheck source=bench/lib.sh
source bench/lib.sh

USERS=${USERS:-50}
[[ "$USERS" =~ ^[0-9]+$ ]] && [ "$USERS" -ge 2 ] || fail "USERS=$USERS: give a whole number of users, at least 2"
DURATION=$(seconds "${DURATION:-15}" DURATION)
ROUNDS=${ROUNDS:-1}
[[ "$ROUNDS" =~ ^[0-9]+$ ]] && [ "$ROUNDS" -ge 1 ] || fail "ROUNDS=$ROUNDS: give a whole number of rounds, at least 1"
PORT=${PORT:-$(free_ports 1)}
server_pid=""
shard_pids=()
stop_everything() {
    for pid in "${shard_pids[@]}"; do stop_pid "$pid"; done
    stop_pid "$server_pid"
}

need python3 "apt-get install -y python3"
need curl "apt-get install -y curl"
cargo build --release --quiet --bin peregrine || fail "cargo build --release failed"
peregrine=target/release/peregrine

"$peregrine" serve --database-url "sqlite://$work/bench.db" --bind "127.0.0.1:$PORT" --seed 20 >"$work/server.log" 2>&1 &
server_pid=$!
wait_for_http "http://127.0.0.1:$PORT/healthz" "$server_pid" "$work/server.log" 30
url="http://127.0.0.1:$PORT/users/"

cat >"$work/plan.yml" <<YAML
execution:
  - concurrency: $USERS
    hold-for: ${DURATION}s
    scenario: users
scenarios:
  users:
    timeout: 3s
    requests:
      - label: users
        url: $url
YAML

# single ROUND: the whole plan in one process.
single() {
    "$peregrine" load "$work/plan.yml" --report "$work/single-$1" >"$work/single-$1.log" 2>&1 ||
        fail "the single run failed (log: $work/single-$1.log)"
}

# sharded ROUND: shards 0/2 and 1/2 at once, starting together, then merged.
sharded() {
    local at
    at=$(($(date +%s) + 3))
    shard_pids=()
    for index in 0 1; do
        "$peregrine" load "$work/plan.yml" --shard "$index/2" --start-at "$at" \
            --report "$work/shard-$1-$index" >"$work/shard-$1-$index.log" 2>&1 &
        shard_pids+=($!)
    done
    for index in 0 1; do
        wait "${shard_pids[$index]}" || fail "shard $index/2 failed (log: $work/shard-$1-$index.log)"
    done
    shard_pids=()
    grep -q "this shard is late" "$work"/shard-"$1"-*.log && log "round $1: a shard started late"
    "$peregrine" report merge "$work/shard-$1-0" "$work/shard-$1-1" --out "$work/merged-$1" \
        >"$work/merge-$1.log" 2>&1 || fail "report merge failed (log: $work/merge-$1.log)"
}

echo "target: $url, $USERS users, ${DURATION}s per run, $ROUNDS round(s), $(nproc) cores"
for round in $(seq "$ROUNDS"); do
    log "round $round: one process"
    single "$round"
    log "round $round: 2 shards"
    sharded "$round"
done

python3 - "$work" "$ROUNDS" <<'PY'
import json, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def figures(name):
    data = json.load(open(f"{work}/{name}/report.json"))
    levels = {p["level"]: p["seconds"] for p in data["overall"]["percentiles"]}
    return data["overall"]["throughput"], data["overall"]["samples"], levels[50.0] * 1000, levels[99.0] * 1000
def mean(runs, i): return sum(r[i] for r in runs) / len(runs)
single = [figures(f"single-{r}") for r in range(1, rounds + 1)]
merged = [figures(f"merged-{r}") for r in range(1, rounds + 1)]
print(f"{'run':<18} {'req/s':>10} {'samples':>10} {'p50 ms':>8} {'p99 ms':>8}")
for name, runs in (("one process", single), ("2 shards, merged", merged)):
    print(f"{name:<18} {mean(runs, 0):>10.0f} {mean(runs, 1):>10.0f} {mean(runs, 2):>8.3f} {mean(runs, 3):>8.3f}")
ratio = mean(merged, 0) / mean(single, 0)
print(f"merged / single req/s: {ratio:.3f} ({'within' if abs(ratio - 1) <= 0.10 else 'NOT within'} 10 %)")
PY
