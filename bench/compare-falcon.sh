#!/usr/bin/env bash
# Peregrine against the tutorial's stack (Falcon + peewee under gunicorn), FastAPI + asyncpg,
# and pgbench, all on the very same private PostgreSQL and the same rows, in one run.
#
#   bash bench/compare-falcon.sh                 # the whole comparison (~10 minutes)
#   DURATION=5 PARTS=routes bash bench/compare-falcon.sh   # shorter, routes only
#
# PARTS picks what runs (default: all): routes (the table of req/s, p50, p99, errors, with
# ratios), rows10k (the 10,000-row list), many (10,000 connections and peak RSS), seed
# (db seed --users 1000000 against psql COPY), sqlite (the routes on the SQLite default).
# Needs: wrk, pgbench and psql (PostgreSQL 15), python3; the peers install themselves into
# /tmp (see ../shared/peers). Everything it starts is stopped at the end, by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PEERS=${PEERS:-$ROOT/../shared/peers}
DURATION=${DURATION:-15}
PARTS=${PARTS:-routes rows10k many seed sqlite}
PGPORT=${PGPORT:-55432}
PGBASE=${PGBASE:-/tmp/peer-pg}  # the Falcon peer's cluster (its start.sh default)
FALCON_PORT=8000 FASTAPI_PORT=8001 PEREGRINE_PORT=8002 SQLITE_PORT=8003
DB_URL="postgres://orguser:123456@127.0.0.1:$PGPORT/orgdb"
PGBIN=/usr/lib/postgresql/15/bin
export PGPASSWORD=123456
work=$(mktemp -d)
results="$work/results"
peregrine_pid=""

log() { echo "[compare] $*" >&2; }
has() { [[ " $PARTS " == *" $1 "* ]]; }

cleanup() {
    stop_peregrine
    STATE=/tmp/peer-fastapi bash "$PEERS/fastapi/stop.sh" >/dev/null 2>&1 || true
    bash "$PEERS/falcon/stop.sh" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

stop_peregrine() {
    if [ -n "$peregrine_pid" ]; then
        kill -TERM "$peregrine_pid" 2>/dev/null || true
        wait "$peregrine_pid" 2>/dev/null || true
        peregrine_pid=""
    fi
}

# start_peregrine PORT DATABASE_URL [flags…]
start_peregrine() {
    local port=$1 url=$2
    shift 2
    stop_peregrine
    "$ROOT/target/release/peregrine" serve --bind "127.0.0.1:$port" --database-url "$url" "$@" \
        >"$work/peregrine-$port.log" 2>&1 &
    peregrine_pid=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$work/peregrine-$port.log" >&2
    return 1
}

peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# wrk_run NAME URL CONNECTIONS [THREADS] -> appends one result line
wrk_run() {
    local name=$1 url=$2 connections=$3 threads=${4:-1} out="$work/wrk.out"
    wrk -t"$threads" -c"$connections" -d"${DURATION}s" --timeout 3s --latency "$url" >"$out" 2>&1 || true
    python3 - "$name" "$connections" "$out" >>"$results" <<'PY'
import re, sys
name, connections, path = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
def ms(pattern):
    m = re.search(pattern + r"\s+([\d.]+)(us|ms|s)\b", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)) if "Requests/sec" in text else 0.0
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
errors = sum(int(x) for x in sock.groups()[:3]) if sock else 0
timeouts = int(sock.group(4)) if sock else 0
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors += int(non2xx.group(1)) if non2xx else 0
print(f"{name}\t{connections}\t{rps:.0f}\t{ms('50%'):.2f}\t{ms('99%'):.2f}\t{errors}\t{timeouts}")
PY
}

# pgbench_run NAME SQL -> appends one result line (tps as req/s)
pgbench_run() {
    local name=$1 sql=$2 script="$work/pgbench.sql"
    echo "$sql" >"$script"
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U orguser -n -M prepared -c16 -j2 -T"$DURATION" -f "$script" orgdb \
        >"$work/pgbench.out" 2>&1 || true
    python3 - "$name" "$work/pgbench.out" >>"$results" <<'PY'
import re, sys
text = open(sys.argv[2]).read()
m = re.search(r"tps = ([\d.]+)", text)
print(f"{sys.argv[1]}\t16\t{float(m.group(1)) if m else 0:.0f}\tnan\tnan\t0\t0")
PY
}

warm() { wrk -t1 -c50 -d2s "$1" >/dev/null 2>&1 || true; }

command -v wrk >/dev/null || { echo "error: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
log "building peregrine (release)"
cargo build --release --quiet --bin peregrine
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "starting the peers (Falcon with 5 workers, FastAPI with 2) on PostgreSQL :$PGPORT"
N_USERS=20 WORKERS=5 PORT=$FALCON_PORT bash "$PEERS/falcon/start.sh" >"$work/falcon.log" 2>&1
WORKERS=2 PORT=$FASTAPI_PORT bash "$PEERS/fastapi/start.sh" >"$work/fastapi.log" 2>&1
start_peregrine "$PEREGRINE_PORT" "$DB_URL"

declare -A base=([falcon]=$FALCON_PORT [fastapi]=$FASTAPI_PORT [peregrine]=$PEREGRINE_PORT)
: >"$results"
if has routes; then
    for server in falcon fastapi peregrine; do warm "http://127.0.0.1:${base[$server]}/users/7"; done
    for route in /users/ /users/7; do
        for connections in 100 500; do
            for server in falcon fastapi peregrine; do
                log "$server GET $route c$connections"
                wrk_run "$server $route" "http://127.0.0.1:${base[$server]}$route" "$connections"
            done
        done
    done
    log "pgbench (the database's own ceiling)"
    pgbench_run "pgbench /users/7" "SELECT id, username FROM orguser WHERE id = 7;"
    pgbench_run "pgbench /users/" "SELECT id, username FROM orguser ORDER BY id;"
fi

if has rows10k; then
    log "10,000 rows"
    N_USERS=10000 WORKERS=5 PORT=$FALCON_PORT bash "$PEERS/falcon/start.sh" >"$work/falcon.log" 2>&1
    start_peregrine "$PEREGRINE_PORT" "$DB_URL" --max-page-size 10000
    for connections in 100; do
        wrk_run "falcon 10k-rows" "http://127.0.0.1:$FALCON_PORT/users/" "$connections"
        wrk_run "fastapi 10k-rows" "http://127.0.0.1:$FASTAPI_PORT/users/" "$connections"
        wrk_run "peregrine 10k-rows" "http://127.0.0.1:$PEREGRINE_PORT/users/?limit=10000" "$connections"
    done
    pgbench_run "pgbench 10k-rows" "SELECT id, username FROM orguser ORDER BY id;"
    N_USERS=20 WORKERS=5 PORT=$FALCON_PORT bash "$PEERS/falcon/start.sh" >"$work/falcon.log" 2>&1
fi

if has many; then
    log "peregrine at 500 and 10,000 connections (peak RSS)"
    start_peregrine "$PEREGRINE_PORT" "$DB_URL"
    wrk_run "peregrine-rss500 /users/7" "http://127.0.0.1:$PEREGRINE_PORT/users/7" 500
    echo "rss500_kb $(peak_rss_kb "$peregrine_pid")" >>"$work/extra"
    start_peregrine "$PEREGRINE_PORT" "$DB_URL"
    DURATION_SAVED=$DURATION; DURATION=30
    wrk_run "peregrine-10k /users/7" "http://127.0.0.1:$PEREGRINE_PORT/users/7" 10000 2
    DURATION=$DURATION_SAVED
    echo "rss10k_kb $(peak_rss_kb "$peregrine_pid")" >>"$work/extra"
fi

if has seed; then
    log "seeding 1,000,000 users: peregrine db seed against psql COPY into a table of the same shape"
    psql_cmd=("$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U orguser -qAt -v ON_ERROR_STOP=1 orgdb)
    # CHECKPOINT needs a superuser: the peer's cluster trusts postgres on its socket.
    checkpoint() { "$PGBIN/psql" -h "$PGBASE" -p "$PGPORT" -U postgres -qAt -c CHECKPOINT orgdb >/dev/null 2>&1 || true; }
    python3 -c "
import uuid
names = set()
while len(names) < 1000000:
    names.add(uuid.uuid4().hex[:8])
print('\\n'.join(names))" >"$work/names.txt"
    stop_peregrine
    time_copy() {
        "${psql_cmd[@]}" -c "DROP TABLE IF EXISTS copy_bench; CREATE TABLE copy_bench (id SERIAL PRIMARY KEY, username VARCHAR(255) NOT NULL UNIQUE)" 2>/dev/null
        checkpoint
        local start; start=$(date +%s%N)
        "${psql_cmd[@]}" -c "\\copy copy_bench (username) FROM '$work/names.txt'"
        echo "copy_s$1 $(( ($(date +%s%N) - start) / 1000000 ))e-3" >>"$work/extra"
        "${psql_cmd[@]}" -c "DROP TABLE copy_bench"
    }
    time_seed() {
        "${psql_cmd[@]}" -c "TRUNCATE orguser RESTART IDENTITY"
        checkpoint
        local start; start=$(date +%s%N)
        "$ROOT/target/release/peregrine" db seed --users 1000000 --database-url "$DB_URL" >/dev/null 2>&1
        echo "seed_s$1 $(( ($(date +%s%N) - start) / 1000000 ))e-3" >>"$work/extra"
        echo "seed_added$1 $("${psql_cmd[@]}" -c "SELECT count(*) FROM orguser")" >>"$work/extra"
    }
    # Two rounds in opposite orders, each after a checkpoint: whichever runs second would
    # otherwise pay for the first one's dirty buffers and WAL.
    time_copy 1; time_seed 1
    time_seed 2; time_copy 2
    # Back to the tutorial's 20 rows for anything after this.
    N_USERS=20 WORKERS=5 PORT=$FALCON_PORT bash "$PEERS/falcon/start.sh" >"$work/falcon.log" 2>&1
fi

if has sqlite; then
    log "the SQLite default"
    start_peregrine "$SQLITE_PORT" "sqlite://$work/sqlite.db" --seed 20
    for route in /users/ /users/7; do
        for connections in 100 500; do
            wrk_run "peregrine-sqlite $route" "http://127.0.0.1:$SQLITE_PORT$route" "$connections"
        done
    done
    stop_peregrine
fi

python3 - "$results" "$work/extra" "$DURATION" <<'PY'
import math, os, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
extra = dict(line.split() for line in open(sys.argv[2])) if os.path.exists(sys.argv[2]) else {}
table = {}
for name, conns, rps, p50, p99, errors, timeouts in rows:
    table[(name, conns)] = (float(rps), float(p50), float(p99), int(errors), int(timeouts))
print(f"\nwrk -t1 -d{sys.argv[3]}s --timeout 3s --latency; pgbench -M prepared -c16 -j2 (tps); {os.cpu_count()} cores\n")
print(f"{'server route':<28} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>9} {'errors':>7} {'timeouts':>8}")
for (name, conns), (rps, p50, p99, errors, timeouts) in table.items():
    print(f"{name:<28} {conns:>5} {rps:>9.0f} {p50:>8.2f} {p99:>9.2f} {errors:>7} {timeouts:>8}")
def ratio(a, b):
    return a / b if b else math.nan
print("\nratios (req/s; p99 as peer / peregrine)")
for route in ("/users/", "/users/7"):
    for conns in ("100", "500"):
        p = table.get((f"peregrine {route}", conns))
        if not p:
            continue
        parts = []
        for peer in ("falcon", "fastapi"):
            q = table.get((f"{peer} {route}", conns))
            if q:
                parts.append(f"{peer}: {ratio(p[0], q[0]):.1f}x req/s, p99 {ratio(q[2], p[2]):.1f}x lower")
        pg = table.get((f"pgbench {route}", "16"))
        if pg:
            parts.append(f"pgbench: {ratio(p[0], pg[0]):.2f}")
        print(f"  {route:<9} c{conns:<4} " + "; ".join(parts))
p, f, a = table.get(("peregrine 10k-rows", "100")), table.get(("falcon 10k-rows", "100")), table.get(("fastapi 10k-rows", "100"))
if p and f and a:
    print(f"  10k rows  c100  falcon: {ratio(p[0], f[0]):.1f}x; fastapi: {ratio(p[0], a[0]):.1f}x")
if "rss500_kb" in extra:
    print(f"\npeak RSS of peregrine: {int(extra['rss500_kb']) / 1024:.1f} MiB at 500 connections, "
          f"{int(extra.get('rss10k_kb', 0)) / 1024:.1f} MiB at 10,000")
if "seed_s1" in extra:
    seeds = [float(extra[f"seed_s{r}"]) for r in (1, 2)]
    copies = [float(extra[f"copy_s{r}"]) for r in (1, 2)]
    print(f"seeding 1,000,000 users (two rounds, opposite orders, checkpoint before each): "
          f"peregrine db seed {seeds[0]:.2f} / {seeds[1]:.2f} s (added {extra['seed_added1']} / "
          f"{extra['seed_added2']}), psql COPY {copies[0]:.2f} / {copies[1]:.2f} s; "
          f"ratio of the best {min(seeds) / min(copies):.2f}, of the sums {sum(seeds) / sum(copies):.2f}")
PY
