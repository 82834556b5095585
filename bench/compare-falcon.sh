#!/usr/bin/env bash
# Peregrine against the tutorial's stack (Falcon + peewee under gunicorn), FastAPI + asyncpg
# under uvicorn, and pgbench, all on one private PostgreSQL and the very same rows, in one run.
#
#   bash bench/compare-falcon.sh                             # everything (~10 minutes)
#   DURATION=5s PARTS=routes bash bench/compare-falcon.sh    # shorter, routes only
#
# PARTS picks what runs (default: all): routes (req/s, p50, p99, errors, with ratios),
# rows10k (the 10,000-row list), many (10,000 connections and peak RSS), seed (db seed
# --users 1000000 against psql COPY), sqlite (the routes on the SQLite default).
# DURATION is each wrk run's length in seconds (default 15; `15s` works too).
#
# Needs: wrk (apt-get install -y wrk), PostgreSQL's programs (initdb, pg_ctl, psql, pgbench;
# found through `pg_config --bindir` or under /usr/lib/postgresql/*/bin, as the tests find
# them), python3 with venv, curl, cargo. The peers are in bench/peers/; their Python
# packages are installed from PyPI into venvs under $BENCH_CACHE (default
# ~/.cache/peregrine-bench), once. Everything else (the cluster, logs) lives in a temporary
# directory, removed after a successful run and kept, with its path printed, after a
# failure. Ports are free ones picked at start. Everything it starts is stopped by pid.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PEERS=$ROOT/bench/peers
work=$(mktemp -d -t peregrine-bench.XXXXXX)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION=$(seconds "${DURATION:-15}" DURATION)
MANY_DURATION=$(seconds "${MANY_DURATION:-30}" MANY_DURATION)
PARTS=${PARTS:-routes rows10k many seed sqlite}
BENCH_CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/peregrine-bench}
FALCON_WORKERS=5 FASTAPI_WORKERS=2
results="$work/results"
peregrine_pid="" falcon_pid="" fastapi_pid="" pg_started=""
export PYTHONDONTWRITEBYTECODE=1 PGPASSWORD=123456

has() { [[ " $PARTS " == *" $1 "* ]]; }

for part in $PARTS; do
    [[ " routes rows10k many seed sqlite " == *" $part "* ]] ||
        fail "PARTS: unknown part \"$part\"; the parts are routes rows10k many seed sqlite"
done
need wrk "apt-get install -y wrk"
need python3 "apt-get install -y python3 python3-venv"
need curl "apt-get install -y curl"
need cargo "see https://rustup.rs"
python3 -c 'import venv, ensurepip' 2>/dev/null || fail "python3 cannot create venvs: apt-get install -y python3-venv"
PGBIN=$(pg_bindir)
for program in initdb pg_ctl psql pgbench; do
    [ -x "$PGBIN/$program" ] || fail "$PGBIN/$program is missing: apt-get install -y postgresql postgresql-contrib"
done
{ read -r PGPORT; read -r FALCON_PORT; read -r FASTAPI_PORT; read -r PEREGRINE_PORT; read -r SQLITE_PORT; } < <(free_ports 5)
DB_URL="postgres://orguser:123456@127.0.0.1:$PGPORT/orgdb"

stop_everything() {
    stop_peregrine
    stop_pid "$fastapi_pid"
    stop_pid "$falcon_pid"
    stop_postgres
}

stop_peregrine() {
    stop_pid "$peregrine_pid"
    peregrine_pid=""
}

# venv NAME: the peer's venv under $BENCH_CACHE, created and filled from its
# requirements.txt on first use; prints its path.
venv() {
    local name=$1 dir="$BENCH_CACHE/venv-$1" stamp
    stamp="$dir/.requirements-$(cksum <"$PEERS/$name/requirements.txt" | cut -d' ' -f1)"
    if [ ! -e "$stamp" ]; then
        log "installing the $name peer's packages into $dir (pip, from PyPI; once)"
        rm -rf "$dir"
        mkdir -p "$BENCH_CACHE"
        python3 -m venv "$dir" >"$work/venv-$name.log" 2>&1 ||
            fail "cannot create the venv $dir (log: $work/venv-$name.log)"
        "$dir/bin/pip" install -q -r "$PEERS/$name/requirements.txt" >>"$work/venv-$name.log" 2>&1 ||
            fail "pip could not install $PEERS/$name/requirements.txt (log: $work/venv-$name.log): $(tail -n 3 "$work/venv-$name.log")"
        touch "$stamp"
    fi
    echo "$dir"
}

# seed_rows N: the table holds exactly ids 1..N (the Falcon peer's own helper does it).
seed_rows() {
    ORGDB_PORT=$PGPORT "$FALCON_VENV/bin/python" "$PEERS/falcon/seed.py" "$1" >>"$work/seed.log" 2>&1 ||
        fail "seeding $1 rows failed (log: $work/seed.log): $(tail -n 3 "$work/seed.log")"
}

start_falcon() {
    log "starting Falcon + peewee under gunicorn ($FALCON_WORKERS workers) on 127.0.0.1:$FALCON_PORT"
    ORGDB_PORT=$PGPORT "$FALCON_VENV/bin/gunicorn" --chdir "$PEERS/falcon" --workers "$FALCON_WORKERS" \
        --bind "127.0.0.1:$FALCON_PORT" app:api >"$work/falcon.log" 2>&1 &
    falcon_pid=$!
    wait_for_http "http://127.0.0.1:$FALCON_PORT/users/1" "$falcon_pid" "$work/falcon.log"
    wait_for_workers "$falcon_pid" "$FALCON_WORKERS" "$work/falcon.log"
}

start_fastapi() {
    log "starting FastAPI + asyncpg under uvicorn ($FASTAPI_WORKERS workers) on 127.0.0.1:$FASTAPI_PORT"
    DATABASE_URL="postgresql://orguser:123456@127.0.0.1:$PGPORT/orgdb" "$FASTAPI_VENV/bin/uvicorn" \
        --app-dir "$PEERS/fastapi" --host 127.0.0.1 --port "$FASTAPI_PORT" --workers "$FASTAPI_WORKERS" \
        --no-access-log --log-level warning app:app >"$work/fastapi.log" 2>&1 &
    fastapi_pid=$!
    wait_for_http "http://127.0.0.1:$FASTAPI_PORT/users/1" "$fastapi_pid" "$work/fastapi.log"
    wait_for_workers "$fastapi_pid" "$FASTAPI_WORKERS" "$work/fastapi.log"
}

# wait_for_workers PID N LOG: until PID has N worker processes (the first answer may come
# from the first worker alone).
wait_for_workers() {
    for _ in $(seq 300); do
        [ "$(pgrep -c -P "$1" || true)" -ge "$2" ] && return 0
        sleep 0.1
    done
    fail "pid $1 did not start $2 workers within 30 s (log: $3)"
}

# start_peregrine PORT DATABASE_URL [flags…]
start_peregrine() {
    local port=$1 url=$2
    shift 2
    stop_peregrine
    "$ROOT/target/release/peregrine" serve --bind "127.0.0.1:$port" --database-url "$url" "$@" \
        >"$work/peregrine-$port.log" 2>&1 &
    peregrine_pid=$!
    wait_for_http "http://127.0.0.1:$port/readyz" "$peregrine_pid" "$work/peregrine-$port.log" 30
}

peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# wrk_run NAME URL CONNECTIONS [THREADS] -> appends one result line
wrk_run() {
    local name=$1 url=$2 connections=$3 threads=${4:-1} out="$work/wrk.out"
    wrk -t"$threads" -c"$connections" -d"${DURATION}s" --timeout 3s --latency "$url" >"$out" 2>&1 || true
    grep -q "Requests/sec" "$out" || fail "wrk against $url gave no result: $(head -c 500 "$out")"
    python3 - "$name" "$connections" "$out" >>"$results" <<'PY'
import re, sys
name, connections, path = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
def ms(pattern):
    m = re.search(pattern + r"\s+([\d.]+)(us|ms|s)\b", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
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
        >"$work/pgbench.out" 2>&1 || fail "pgbench failed: $(tail -n 5 "$work/pgbench.out")"
    python3 - "$name" "$work/pgbench.out" >>"$results" <<'PY'
import re, sys
m = re.search(r"tps = ([\d.]+)", open(sys.argv[2]).read())
print(f"{sys.argv[1]}\t16\t{float(m.group(1)):.0f}\tnan\tnan\t0\t0")
PY
}

warm() { wrk -t1 -c50 -d2s "$1" >/dev/null 2>&1 || true; }

log "building peregrine (release)"
cargo build --release --quiet --bin peregrine || fail "cargo build --release failed"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
read -r load1 _ </proc/loadavg
log "load average before the run: $load1 on $(nproc) cores (other work on the machine makes figures noisy)"

FALCON_VENV=$(venv falcon)
FASTAPI_VENV=$(venv fastapi)
start_postgres
seed_rows 20
start_falcon
start_fastapi
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
    seed_rows 10000
    start_peregrine "$PEREGRINE_PORT" "$DB_URL" --max-page-size 10000
    wrk_run "falcon 10k-rows" "http://127.0.0.1:$FALCON_PORT/users/" 100
    wrk_run "fastapi 10k-rows" "http://127.0.0.1:$FASTAPI_PORT/users/" 100
    wrk_run "peregrine 10k-rows" "http://127.0.0.1:$PEREGRINE_PORT/users/?limit=10000" 100
    pgbench_run "pgbench 10k-rows" "SELECT id, username FROM orguser ORDER BY id;"
    seed_rows 20
fi

if has many; then
    log "peregrine at 500 and 10,000 connections (peak RSS)"
    start_peregrine "$PEREGRINE_PORT" "$DB_URL"
    wrk_run "peregrine-rss500 /users/7" "http://127.0.0.1:$PEREGRINE_PORT/users/7" 500
    echo "rss500_kb $(peak_rss_kb "$peregrine_pid")" >>"$work/extra"
    # Past --max-connections (4096 by default) serve sheds connections by design, and
    # past --max-client-connections per address: every connection here is 127.0.0.1's.
    start_peregrine "$PEREGRINE_PORT" "$DB_URL" --max-connections 12000 --max-client-connections 12000
    DURATION_SAVED=$DURATION
    DURATION=$MANY_DURATION
    wrk_run "peregrine-10k /users/7" "http://127.0.0.1:$PEREGRINE_PORT/users/7" 10000 2
    DURATION=$DURATION_SAVED
    echo "rss10k_kb $(peak_rss_kb "$peregrine_pid")" >>"$work/extra"
fi

if has seed; then
    log "seeding 1,000,000 users: peregrine db seed against psql COPY into a table of the same shape"
    psql_cmd=("$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U orguser -qAt -v ON_ERROR_STOP=1 orgdb)
    checkpoint() { superuser_sql orgdb CHECKPOINT >/dev/null; }
    python3 -c "
import uuid
names = set()
while len(names) < 1000000:
    names.add(uuid.uuid4().hex[:8])
print('\\n'.join(names))" >"$work/names.txt"
    stop_peregrine
    time_copy() {
        "${psql_cmd[@]}" -c "SET client_min_messages = warning; DROP TABLE IF EXISTS copy_bench; CREATE TABLE copy_bench (id SERIAL PRIMARY KEY, username VARCHAR(255) NOT NULL UNIQUE)"
        checkpoint
        local start
        start=$(date +%s%N)
        "${psql_cmd[@]}" -c "\\copy copy_bench (username) FROM '$work/names.txt'"
        echo "copy_s$1 $((($(date +%s%N) - start) / 1000000))e-3" >>"$work/extra"
        "${psql_cmd[@]}" -c "DROP TABLE copy_bench"
    }
    time_seed() {
        "${psql_cmd[@]}" -c "TRUNCATE orguser RESTART IDENTITY"
        checkpoint
        local start
        start=$(date +%s%N)
        "$ROOT/target/release/peregrine" db seed --users 1000000 --database-url "$DB_URL" >"$work/seed-$1.log" 2>&1 ||
            fail "peregrine db seed failed (log: $work/seed-$1.log)"
        echo "seed_s$1 $((($(date +%s%N) - start) / 1000000))e-3" >>"$work/extra"
        echo "seed_added$1 $("${psql_cmd[@]}" -c "SELECT count(*) FROM orguser")" >>"$work/extra"
    }
    # Two rounds in opposite orders, each after a checkpoint: whichever runs second would
    # otherwise pay for the first one's dirty buffers and WAL.
    time_copy 1
    time_seed 1
    time_seed 2
    time_copy 2
    # Back to the tutorial's 20 rows for anything after this.
    seed_rows 20
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

read -r load1 _ </proc/loadavg
log "load average after the run: $load1 on $(nproc) cores"
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
