#!/usr/bin/env bash
# What watching a run costs: wrk, `peregrine load` alone and `peregrine load --dashboard`
# (with a browser-like client on /events and a Prometheus-like scrape of /metrics each
# second) against the same local target (`peregrine serve`'s GET /healthz), the same
# connections, DURATION s each, alternating for ROUNDS rounds in one run. Prints req/s and
# p99 per tool with the ratios: peregrine to wrk, and with the dashboard to without.
# Not a CI test; run it alone on the machine:
#
#   flock /tmp/bench.lock bash bench/dashboard.sh      # CONNECTIONS=50 DURATION=8 ROUNDS=2
#   PROFILE=dev ROUNDS=1 bash bench/dashboard.sh       # quick check on a debug build
#
# Needs: wrk (apt-get install wrk), curl, python3.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d -t peregrine-dashboard.XXXXXX)
# shellcheck source=bench/lib.sh
source bench/lib.sh

CONNECTIONS=${CONNECTIONS:-50}
DURATION=$(seconds "${DURATION:-8}" DURATION)
ROUNDS=${ROUNDS:-2}
PROFILE=${PROFILE:-release}
ports=$(free_ports 2)
PORT=${ports%%$'\n'*}
DASHBOARD_PORT=${ports##*$'\n'}
server_pid=""
watchers=()
stop_everything() {
    for pid in "${watchers[@]}"; do stop_pid "$pid"; done
    stop_pid "$server_pid"
}

need wrk "apt-get install -y wrk"
need curl "apt-get install -y curl"
need python3 "apt-get install -y python3"
cargo build --profile "$PROFILE" --quiet --bin peregrine || fail "cargo build --profile $PROFILE failed"
dir=$PROFILE; [ "$PROFILE" = dev ] && dir=debug
peregrine=target/$dir/peregrine

"$peregrine" serve --database-url "sqlite://$work/bench.db" --bind "127.0.0.1:$PORT" >"$work/server.log" 2>&1 &
server_pid=$!
wait_for_http "http://127.0.0.1:$PORT/healthz" "$server_pid" "$work/server.log" 30
url="http://127.0.0.1:$PORT/healthz"

# Watches the dashboard as a browser and Prometheus would until the run closes it.
watch_dashboard() {
    local base="http://127.0.0.1:$DASHBOARD_PORT"
    for _ in $(seq 50); do curl -sf -o /dev/null "$base/metrics" && break; sleep 0.1; done
    curl -sN --max-time $((DURATION + 10)) "$base/events" >"$work/events.out" 2>/dev/null &
    watchers+=($!)
    (for _ in $(seq $((DURATION + 5))); do curl -sf -o /dev/null --max-time 2 "$base/metrics" || break; sleep 1; done) &
    watchers+=($!)
}

# Runs one tool; appends "tool rps p99_ms".
measure() {
    local tool=$1 out="$work/$1.out"
    case $tool in
        wrk) wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" >"$out" ;;
        peregrine) "$peregrine" load "$url" -c "$CONNECTIONS" --hold-for "${DURATION}s" -q --report "$work/report" >"$work/load.log" 2>&1
                   cp "$work/report/report.json" "$out" ;;
        dashboard) watchers=()
                   "$peregrine" load "$url" -c "$CONNECTIONS" --hold-for "${DURATION}s" -q --report "$work/report" \
                       --dashboard "127.0.0.1:$DASHBOARD_PORT" >"$work/load.log" 2>&1 &
                   local load_pid=$!
                   watch_dashboard
                   wait "$load_pid" || fail "peregrine load --dashboard failed: $(tail -3 "$work/load.log")"
                   for pid in "${watchers[@]}"; do wait "$pid" 2>/dev/null || true; done
                   grep -q '^event: end' "$work/events.out" || fail "the event stream did not end with the verdict"
                   cp "$work/report/report.json" "$out" ;;
    esac
    python3 - "$tool" "$out" >>"$work/results" <<'PY'
import json, re, sys
tool, out = sys.argv[1], sys.argv[2]
text = open(out).read()
if tool == "wrk":
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", text).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
else:
    data = json.loads(text)
    rps = data["overall"]["throughput"]
    p99 = {p["level"]: p["seconds"] for p in data["overall"]["percentiles"]}[99.0] * 1000
print(tool, rps, p99)
PY
}

echo "target: $url, $CONNECTIONS connections, ${DURATION}s per run, $ROUNDS rounds, $(nproc) cores, $PROFILE build"
for round in $(seq "$ROUNDS"); do
    for tool in wrk peregrine dashboard; do
        echo "round $round: $tool" >&2
        measure "$tool"
    done
done

python3 - "$work/results" <<'PY'
import sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    tool, rps, p99 = line.split()
    rows[tool].append((float(rps), float(p99)))
mean = lambda values: sum(values) / len(values)
s = {tool: (mean([r[0] for r in runs]), mean([r[1] for r in runs])) for tool, runs in rows.items()}
names = {"wrk": "wrk", "peregrine": "peregrine load", "dashboard": "  --dashboard"}
print(f"{'tool':<16} {'req/s':>10} {'p99 ms':>8} {'vs wrk':>7}   per round (req/s)")
for tool in ("wrk", "peregrine", "dashboard"):
    rps, p99 = s[tool]
    rounds = " ".join(f"{r[0]:.0f}" for r in rows[tool])
    print(f"{names[tool]:<16} {rps:>10.0f} {p99:>8.3f} {rps / s['wrk'][0]:>7.2f}   {rounds}")
print(f"with the dashboard / without: req/s {s['dashboard'][0] / s['peregrine'][0]:.3f}")
PY
