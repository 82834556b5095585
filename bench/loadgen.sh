#!/usr/bin/env bash
# Peregrine's load generator against wrk and oha, side by side in one run: the same tiny
# local target (`peregrine serve`'s GET /healthz), the same connections, 10 s each,
# alternating tools for ROUNDS rounds. Prints req/s, CPU seconds per 10k requests (user+sys
# of the load tool alone) and p50/p99, with ratios to wrk. Not a CI test.
#
#   bash bench/loadgen.sh                 # CONNECTIONS=50 DURATION=10 ROUNDS=2 by default
#   CONNECTIONS=100 ROUNDS=3 bash bench/loadgen.sh
#
# Needs: wrk (apt-get install wrk), python3. oha (cargo install oha --locked) is optional:
# without it the comparison is with wrk alone, and a note says how to add oha.
# The server runs on a free port; a failure names its cause and keeps the logs.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d -t peregrine-loadgen.XXXXXX)
# shellcheck source=bench/lib.sh
source bench/lib.sh

CONNECTIONS=${CONNECTIONS:-50}
DURATION=$(seconds "${DURATION:-10}" DURATION)
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-$(free_ports 1)}
server_pid=""
stop_everything() { stop_pid "$server_pid"; }

need wrk "apt-get install -y wrk"
tools=(wrk oha peregrine)
if ! command -v oha >/dev/null 2>&1; then
    tools=(wrk peregrine)
    log "oha is not installed: comparing with wrk alone (add oha with: cargo install oha --locked)"
fi
need python3 "apt-get install -y python3"
need curl "apt-get install -y curl"
[ -x /usr/bin/time ] || fail "/usr/bin/time is not installed: apt-get install -y time"
cargo build --release --quiet --bin peregrine || fail "cargo build --release failed"
peregrine=target/release/peregrine

"$peregrine" serve --database-url "sqlite://$work/bench.db" --bind "127.0.0.1:$PORT" >"$work/server.log" 2>&1 &
server_pid=$!
wait_for_http "http://127.0.0.1:$PORT/healthz" "$server_pid" "$work/server.log" 30
url="http://127.0.0.1:$PORT/healthz"

# Runs one tool under /usr/bin/time; appends "tool rps cpu_seconds requests p50_ms p99_ms".
measure() {
    local tool=$1 out="$work/$1.out" cpu="$work/$1.cpu"
    case $tool in
        wrk) /usr/bin/time -f "%U %S" -o "$cpu" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" >"$out" ;;
        oha) /usr/bin/time -f "%U %S" -o "$cpu" oha -z "${DURATION}s" -c "$CONNECTIONS" --no-tui --output-format json "$url" >"$out" ;;
        peregrine) /usr/bin/time -f "%U %S" -o "$cpu" "$peregrine" load "$url" -c "$CONNECTIONS" --hold-for "${DURATION}s" --report "$work/report" >"$work/load.log" 2>&1
                   cp "$work/report/report.json" "$out" ;;
    esac
    python3 - "$tool" "$out" "$cpu" "$DURATION" >>"$work/results" <<'PY'
import json, re, sys
tool, out, cpu, duration = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
cpu_seconds = sum(float(x) for x in open(cpu).read().split()[-2:])
text = open(out).read()
def ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
if tool == "wrk":
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    p50 = ms(*re.search(r"50%\s+([\d.]+)(us|ms|s)", text).groups())
    p99 = ms(*re.search(r"99%\s+([\d.]+)(us|ms|s)", text).groups())
elif tool == "oha":
    data = json.loads(text)
    rps = data["summary"]["requestsPerSec"]
    requests = sum(data["statusCodeDistribution"].values())
    p50 = data["latencyPercentiles"]["p50"] * 1000
    p99 = data["latencyPercentiles"]["p99"] * 1000
else:
    data = json.loads(text)
    rps = data["overall"]["throughput"]
    requests = data["overall"]["samples"]
    levels = {p["level"]: p["seconds"] for p in data["overall"]["percentiles"]}
    p50, p99 = levels[50.0] * 1000, levels[99.0] * 1000
print(tool, rps, cpu_seconds, requests, p50, p99)
PY
}

echo "target: $url, $CONNECTIONS connections, ${DURATION}s per run, $ROUNDS rounds, $(nproc) cores"
for round in $(seq "$ROUNDS"); do
    for tool in "${tools[@]}"; do
        echo "round $round: $tool" >&2
        measure "$tool"
    done
done

python3 - "$work/results" <<'PY'
import sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    tool, rps, cpu, requests, p50, p99 = line.split()
    rows[tool].append((float(rps), float(cpu), int(requests), float(p50), float(p99)))
def mean(values): return sum(values) / len(values)
summary = {}
for tool, runs in rows.items():
    summary[tool] = dict(
        rps=mean([r[0] for r in runs]),
        cpu=mean([r[1] / r[2] * 10000 for r in runs]),
        p50=mean([r[3] for r in runs]),
        p99=mean([r[4] for r in runs]),
    )
wrk = summary["wrk"]
print(f"{'tool':<10} {'req/s':>10} {'CPU s/10k':>10} {'p50 ms':>8} {'p99 ms':>8} {'req/s vs wrk':>13} {'CPU vs wrk':>11}")
for tool in ("wrk", "oha", "peregrine"):
    if tool not in summary:
        continue
    s = summary[tool]
    print(f"{tool:<10} {s['rps']:>10.0f} {s['cpu']:>10.3f} {s['p50']:>8.3f} {s['p99']:>8.3f} {s['rps'] / wrk['rps']:>13.2f} {s['cpu'] / wrk['cpu']:>11.2f}")
if "oha" not in summary:
    print("note: oha was not installed, so it is not compared; add it with: cargo install oha --locked")
PY
