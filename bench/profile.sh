#!/usr/bin/env bash
# Where `peregrine serve` spends its CPU on one route: `perf record --call-graph dwarf` on the
# server while wrk drives the route, on a private PostgreSQL with the tutorial's 20 rows.
# Prints the heaviest functions (self time and inclusive time) and writes folded stacks
# (one line per distinct stack with its sample count: the input of any flame-graph tool,
# e.g. `inferno-flamegraph < serve.folded > serve.svg`) into OUT (default ./profile-out).
#
#   bash bench/profile.sh                      # GET /users/, 100 connections, 10 s
#   ROUTE=/users/7 CONNECTIONS=500 bash bench/profile.sh
#
# Needs: perf (apt-get install -y linux-perf), wrk, PostgreSQL's programs, python3, curl,
# cargo. Builds the `profiling` profile (the release build with line tables).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
work=$(mktemp -d -t peregrine-profile.XXXXXX)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

ROUTE=${ROUTE:-/users/}
CONNECTIONS=${CONNECTIONS:-100}
[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] && [ "$CONNECTIONS" -le 20000 ] ||
    fail "CONNECTIONS=$CONNECTIONS: give a whole number from 1 to 20000"
DURATION=$(seconds "${DURATION:-10}" DURATION)
OUT=${OUT:-$ROOT/profile-out}
need perf "apt-get install -y linux-perf"
need wrk "apt-get install -y wrk"
need python3 "apt-get install -y python3"
need curl "apt-get install -y curl"
one_server_on_postgres

log "building peregrine (profiling profile: release with line tables)"
cargo build --profile profiling --quiet --bin peregrine || fail "cargo build --profile profiling failed"
peregrine=$ROOT/target/profiling/peregrine
tutorial_database "$peregrine"
users_up_to 20
# Room for every connection (serve sheds past --max-connections, 4,096 by default, and
# past --max-client-connections from one address, 1,024).
"$peregrine" serve --bind "127.0.0.1:$PORT" --database-url "$DB_URL" \
    --max-connections "$((CONNECTIONS + 2000))" --max-client-connections "$((CONNECTIONS + 2000))" >"$work/server.log" 2>&1 &
server_pid=$!
wait_for_http "http://127.0.0.1:$PORT/readyz" "$server_pid" "$work/server.log" 30
wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$PORT$ROUTE" >/dev/null 2>&1 || true

mkdir -p "$OUT"
log "recording $DURATION s of GET $ROUTE at $CONNECTIONS connections"
wrk -t1 -c"$CONNECTIONS" -d"$((DURATION + 2))s" "http://127.0.0.1:$PORT$ROUTE" >"$OUT/wrk.txt" 2>&1 &
wrk_pid=$!
sleep 1
perf record -F 499 --call-graph dwarf,16384 -p "$server_pid" -o "$work/perf.data" -- sleep "$DURATION" \
    >"$work/perf.log" 2>&1 || fail "perf record failed: $(tail -n 3 "$work/perf.log")"
wait "$wrk_pid" || true
perf script -i "$work/perf.data" 2>/dev/null >"$work/perf.txt"

python3 - "$work/perf.txt" "$OUT/serve.folded" <<'PY'
import collections, re, sys
stacks = collections.Counter()
frames = []
def flush():
    if frames:
        stacks[";".join(reversed(frames))] += 1
    frames.clear()
for line in open(sys.argv[1], errors="replace"):
    if not line.strip():
        flush()
        continue
    if line[0] in " \t":
        m = re.match(r"\s+[0-9a-f]+ (.+?) \(", line)
        if m:
            name = re.sub(r"::h[0-9a-f]{16}$", "", m.group(1)).replace(";", ",")
            name = re.sub(r"\+0x[0-9a-f]+$", "", name)
            frames.append(name)
flush()
with open(sys.argv[2], "w") as out:
    for stack, count in stacks.most_common():
        out.write(f"{stack} {count}\n")
total = sum(stacks.values())
own = collections.Counter()
inclusive = collections.Counter()
for stack, count in stacks.items():
    names = stack.split(";")
    own[names[-1]] += count
    for name in set(names):
        inclusive[name] += count
print(f"\n{total} samples; self time (the function itself):")
for name, count in own.most_common(25):
    print(f"  {100 * count / total:5.1f} %  {name[:140]}")
print("\ninclusive time (the function and what it calls):")
for name, count in inclusive.most_common(40):
    print(f"  {100 * count / total:5.1f} %  {name[:140]}")
PY
log "folded stacks: $OUT/serve.folded; wrk's figures: $OUT/wrk.txt"
