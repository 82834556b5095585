#!/usr/bin/env bash
# `peregrine serve` against its yardstick, in one run on one private PostgreSQL and the same
# rows: bench/minimal (the simplest fast hyper + tokio-postgres server: one thread, runtime
# and pipelined connection per core, nothing else) and pgbench running the same queries.
#
#   bash bench/list.sh                       # everything, ROUNDS=2 DURATION=10 (~10 minutes)
#   PARTS=routes ROUNDS=1 bash bench/list.sh # the 20-row list and /users/7 only
#
# PARTS picks what runs (default: all): routes (`GET /users/` on the tutorial's 20 rows and
# `GET /users/7`, at 100 and 500 connections), pages (`?limit=100` and `?limit=1000` at 100 connections, with
# MB/s), idle (memory per idle keep-alive connection), many (10,000 busy connections:
# peak RSS and errors). The two servers take turns, in alternating order, ROUNDS times;
# each figure is the mean over the rounds, and the ratio is Peregrine's over the yardstick's.
# Besides req/s it prints each server's own CPU time per request (user + system, read from
# /proc), which other load on the machine disturbs far less than req/s.
#
# Peregrine runs with its defaults (request ids, metrics, access to /metrics on the API
# port): their cost is part of what is measured.
#
# Needs: wrk (apt-get install -y wrk), PostgreSQL's programs (found as the tests find them),
# python3, curl, cargo. Logs stay in the printed directory when anything fails.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
work=$(mktemp -d -t peregrine-list.XXXXXX)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION=$(seconds "${DURATION:-10}" DURATION)
ROUNDS=${ROUNDS:-2}
[[ "$ROUNDS" =~ ^[1-9][0-9]?$ ]] || fail "ROUNDS=$ROUNDS: give a whole number from 1 to 99"
PARTS=${PARTS:-routes pages idle many}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-5000}
[[ "$IDLE_CONNECTIONS" =~ ^[1-9][0-9]*$ ]] && [ "$IDLE_CONNECTIONS" -le 20000 ] ||
    fail "IDLE_CONNECTIONS=$IDLE_CONNECTIONS: give a whole number from 1 to 20000"
for part in $PARTS; do
    [[ " routes pages idle many " == *" $part "* ]] ||
        fail "PARTS: unknown part \"$part\"; the parts are routes pages idle many"
done
has() { [[ " $PARTS " == *" $1 "* ]]; }

need wrk "apt-get install -y wrk"
need python3 "apt-get install -y python3"
need curl "apt-get install -y curl"
need cargo "see https://rustup.rs"
{ read -r PGPORT; read -r PEREGRINE_PORT; read -r MINIMAL_PORT; } < <(free_ports 3)
tutorial_settings
for program in initdb pg_ctl psql pgbench; do
    [ -x "$PGBIN/$program" ] || fail "$PGBIN/$program is missing: apt-get install -y postgresql postgresql-contrib"
done
results="$work/results"
: >"$results"
peregrine_pid="" minimal_pid=""

stop_everything() {
    stop_servers
    stop_postgres
}

stop_servers() {
    stop_pid "$peregrine_pid"
    stop_pid "$minimal_pid"
    peregrine_pid="" minimal_pid=""
}

# start_servers [PEREGRINE FLAGS…]: both servers, fresh, on their ports.
start_servers() {
    stop_servers
    # Every connection comes from 127.0.0.1 here: the per-address limit (a quarter of the
    # process's by default) would shed the idle and many parts' connections.
    "$ROOT/target/release/peregrine" serve --bind "127.0.0.1:$PEREGRINE_PORT" --database-url "$DB_URL" \
        --max-page-size 1000 --max-client-connections 1000000 "$@" >"$work/peregrine.log" 2>&1 &
    peregrine_pid=$!
    "$ROOT/target/release/minimal-server" "127.0.0.1:$MINIMAL_PORT" \
        "host=127.0.0.1 port=$PGPORT user=orguser password=123456 dbname=orgdb" >"$work/minimal.log" 2>&1 &
    minimal_pid=$!
    wait_for_http "http://127.0.0.1:$PEREGRINE_PORT/readyz" "$peregrine_pid" "$work/peregrine.log" 30
    wait_for_http "http://127.0.0.1:$MINIMAL_PORT/users/1" "$minimal_pid" "$work/minimal.log" 30
}

pid_of() { if [ "$1" = peregrine ]; then echo "$peregrine_pid"; else echo "$minimal_pid"; fi; }
port_of() { if [ "$1" = peregrine ]; then echo "$PEREGRINE_PORT"; else echo "$MINIMAL_PORT"; fi; }

# cpu_ticks PID: user + system clock ticks the process has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# wrk_run SERVER PATH CONNECTIONS [THREADS]: appends "kind server path conns rps mb_s p50 p99
# errors cpu_us_per_request" to the results.
wrk_run() {
    local server=$1 path=$2 connections=$3 threads=${4:-1} out="$work/wrk.out" pid before after
    pid=$(pid_of "$server")
    before=$(cpu_ticks "$pid")
    wrk -t"$threads" -c"$connections" -d"${DURATION}s" --timeout 3s --latency \
        "http://127.0.0.1:$(port_of "$server")$path" >"$out" 2>&1 || true
    after=$(cpu_ticks "$pid")
    grep -q "Requests/sec" "$out" || fail "wrk against $server $path gave no result: $(head -c 500 "$out")"
    python3 - "$server" "$path" "$connections" "$out" "$((after - before))" "$(getconf CLK_TCK)" >>"$results" <<'PY'
import re, sys
server, path, connections, out, ticks, hz = sys.argv[1:]
text = open(out).read()
def ms(label):
    m = re.search(label + r"\s+([\d.]+)(us|ms|s)\b", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")
def megabytes():
    m = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", text)
    return float(m.group(1)) * {"B": 1e-6, "KB": 1024 / 1e6, "MB": 1024**2 / 1e6, "GB": 1024**3 / 1e6}[m.group(2)]
requests = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
errors = sum(int(x) for x in sock.groups()) if sock else 0
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors += int(non2xx.group(1)) if non2xx else 0
cpu_us = int(ticks) / int(hz) * 1e6 / max(requests, 1)
print(f"http\t{server}\t{path}\t{connections}\t{rps:.0f}\t{megabytes():.1f}\t{ms('50%'):.2f}\t{ms('99%'):.2f}\t{errors}\t{cpu_us:.1f}")
PY
}

# pgbench_run PATH SQL ROWS: the same query straight from pgbench (prepared, 16 clients).
pgbench_run() {
    local path=$1 sql=$2 script="$work/pgbench.sql"
    echo "$sql" >"$script"
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U orguser -n -M prepared -c16 -j2 -T"$DURATION" -f "$script" orgdb \
        >"$work/pgbench.out" 2>&1 || fail "pgbench failed: $(tail -n 5 "$work/pgbench.out")"
    python3 - "$path" "$work/pgbench.out" >>"$results" <<'PY'
import re, sys
tps = float(re.search(r"tps = ([\d.]+)", open(sys.argv[2]).read()).group(1))
print(f"http\tpgbench\t{sys.argv[1]}\t16\t{tps:.0f}\tnan\tnan\tnan\t0\tnan")
PY
}

# round_robin PATH CONNECTIONS: both servers, ROUNDS times, the order alternating.
round_robin() {
    local path=$1 connections=$2 round
    for round in $(seq "$ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then order="minimal peregrine"; else order="peregrine minimal"; fi
        for server in $order; do
            log "round $round: $server GET $path c$connections"
            wrk_run "$server" "$path" "$connections"
        done
    done
}

# idle_memory SERVER: RSS growth per idle keep-alive connection (each sent one request).
idle_memory() {
    local server=$1 pid
    pid=$(pid_of "$server")
    python3 - "$server" "$pid" "$(port_of "$server")" "$IDLE_CONNECTIONS" >>"$results" <<'PY'
import socket, sys, time
server, pid, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
# The route both servers answer, as a client that reads one user and keeps its connection.
request = b"GET /users/7 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
def open_idle(n):
    held = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(request)
        if not s.recv(4096).startswith(b"HTTP/1.1 200"):
            sys.exit(f"{server}: a request on an idle-to-be connection failed")
        held.append(s)
    return held
warm = open_idle(200)          # the first connections pay for one-off buffers
time.sleep(0.5)
before = rss_kib()
held = open_idle(count)
time.sleep(1.0)
after = rss_kib()
per = (after - before) * 1024 / count
print(f"idle\t{server}\t-\t{count}\t{per:.0f}\t{after}\tnan\tnan\t0\tnan")
for s in warm + held:
    s.close()
PY
}

log "building peregrine and the yardstick (release)"
cargo build --release --quiet -p peregrine -p peregrine-bench-minimal || fail "cargo build --release failed"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
read -r load1 _ </proc/loadavg
log "load average before the run: $load1 on $(nproc) cores (other work on the machine makes figures noisy)"

tutorial_database "$ROOT/target/release/peregrine"
users_up_to 20
start_servers

for server in minimal peregrine; do wrk -t1 -c50 -d2s "http://127.0.0.1:$(port_of "$server")/users/" >/dev/null 2>&1 || true; done
if has routes; then
    for path in /users/ /users/7; do
        for connections in 100 500; do round_robin "$path" "$connections"; done
    done
    pgbench_run /users/ "SELECT id, username FROM orguser WHERE id > 0 ORDER BY id LIMIT 100;"
    pgbench_run /users/7 "SELECT id, username FROM orguser WHERE id = 7;"
fi
if has pages; then
    users_up_to 1000
    for limit in 100 1000; do
        round_robin "/users/?limit=$limit" 100
        pgbench_run "/users/?limit=$limit" "SELECT id, username FROM orguser WHERE id > 0 ORDER BY id LIMIT $limit;"
    done
fi
if has idle; then
    for server in minimal peregrine; do
        log "$server: $IDLE_CONNECTIONS idle keep-alive connections"
        idle_memory "$server"
    done
fi
if has many; then
    for server in minimal peregrine; do
        start_servers --max-connections 12000
        log "$server: 10,000 busy connections (wrk -t2), peak RSS"
        wrk_run "$server" /users/7 10000 2
        sed -i '$ s/^http/many/' "$results"
        echo "peak	$server	-	10000	$(awk '/VmHWM/ {print $2}' "/proc/$(pid_of "$server")/status")	nan	nan	nan	0	nan" >>"$results"
    done
fi
read -r load1 _ </proc/loadavg
log "load average after the run: $load1"

python3 - "$results" "$DURATION" "$ROUNDS" <<'PY'
import collections, math, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
groups = collections.defaultdict(list)
for kind, server, path, conns, *figures in rows:
    groups[(kind, path, conns, server)].append([float(x) for x in figures])
def mean(key, column):
    values = [r[column] for r in groups.get(key, []) if not math.isnan(r[column])]
    return sum(values) / len(values) if values else float("nan")
def fmt(x, spec=",.0f"):
    return "-" if math.isnan(x) else format(x, spec)
print(f"\nwrk -t1 -d{sys.argv[2]}s --timeout 3s --latency, {sys.argv[3]} round(s) alternating; pgbench -M prepared -c16 -j2\n")
print("| route | conns | minimal req/s | Peregrine req/s | ÷ minimal | pgbench q/s | ÷ pgbench | MB/s minimal / Peregrine | p99 minimal / Peregrine | server CPU µs/request minimal / Peregrine | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
seen = []
for (kind, path, conns, server) in groups:
    if kind == "http" and server != "pgbench" and (path, conns) not in seen:
        seen.append((path, conns))
for path, conns in seen:
    m, p = ("http", path, conns, "minimal"), ("http", path, conns, "peregrine")
    pg = mean(("http", path, "16", "pgbench"), 0)
    errors = sum(r[4] for key in (m, p) for r in groups[key])
    print(f"| `GET {path}` | {conns} | {fmt(mean(m, 0))} | {fmt(mean(p, 0))} | {mean(p, 0) / mean(m, 0):.2f} | "
          f"{fmt(pg)} | {fmt(mean(p, 0) / pg, '.2f')} | {fmt(mean(m, 1), '.1f')} / {fmt(mean(p, 1), '.1f')} | "
          f"{fmt(mean(m, 3), '.1f')} / {fmt(mean(p, 3), '.1f')} ms | {fmt(mean(m, 5), '.1f')} / {fmt(mean(p, 5), '.1f')} | {errors:.0f} |")
for kind, path, conns, server in groups:
    if kind == "idle":
        r = groups[(kind, path, conns, server)][0]
        print(f"\n{server}: {r[0]:,.0f} bytes of RSS per idle keep-alive connection ({int(conns):,} connections; RSS then {r[1] / 1024:.1f} MiB)", end="")
print()
for kind, path, conns, server in groups:
    if kind == "many":
        r = groups[(kind, path, conns, server)][0]
        peak = groups[("peak", "-", conns, server)][0][0]
        print(f"{server}: 10,000 connections on /users/7: {r[0]:,.0f} req/s, {r[5]:.0f} errors, p99 {r[3]:.1f} ms, peak RSS {peak / 1024:.1f} MiB")
PY
