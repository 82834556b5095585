#!/usr/bin/env bash
# Peregrine's load generator against wrk over HTTPS, side by side in one run: HAProxy
# terminates TLS (a CA and a certificate for 127.0.0.1 made here with openssl) in front of
# `peregrine serve`'s GET /healthz. Two modes: keep-alive (one TLS session per connection)
# and a new connection, so a new handshake, per request (wrk: `Connection: close`;
# Peregrine: --no-keepalive). Prints req/s and CPU seconds per 10k requests (user+sys of
# the load tool alone), with ratios to wrk. Not a CI test.
#
#   bash bench/https.sh                   # CONNECTIONS=50 DURATION=10 ROUNDS=1 by default
#   CONNECTIONS=20 ROUNDS=2 bash bench/https.sh
#
# Needs: wrk, haproxy, openssl, curl (apt-get install -y wrk haproxy openssl curl), python3.
# Ports are free ones; a failure names its cause and keeps the logs.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d -t peregrine-https.XXXXXX)
# shellcheck source=bench/lib.sh
source bench/lib.sh

CONNECTIONS=${CONNECTIONS:-50}
DURATION=$(seconds "${DURATION:-10}" DURATION)
ROUNDS=${ROUNDS:-1}
mapfile -t ports < <(free_ports 2)
PORT=${ports[0]}
TLS_PORT=${ports[1]}
server_pid=""
proxy_pid=""
stop_everything() {
    stop_pid "$proxy_pid"
    stop_pid "$server_pid"
}

need wrk "apt-get install -y wrk"
need haproxy "apt-get install -y haproxy"
need openssl "apt-get install -y openssl"
need python3 "apt-get install -y python3"
need curl "apt-get install -y curl"
[ -x /usr/bin/time ] || fail "/usr/bin/time is not installed: apt-get install -y time"
cargo build --release --quiet --bin peregrine || fail "cargo build --release failed"
peregrine=target/release/peregrine

# A CA, and a certificate for 127.0.0.1 it signs (P-256: what HTTPS servers commonly use).
make_certificates() {
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$work/ca.key" -out "$work/ca.pem" -days 2 \
        -subj "/CN=Peregrine bench CA" 2>>"$work/openssl.log"
    openssl req "${ec[@]}" -keyout "$work/server.key" -out "$work/server.csr" \
        -subj "/CN=127.0.0.1" 2>>"$work/openssl.log"
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$work/server.ext"
    openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
        -CAcreateserial -out "$work/server.pem" -days 2 -extfile "$work/server.ext" 2>>"$work/openssl.log"
    cat "$work/server.pem" "$work/server.key" >"$work/haproxy.pem"
}

make_certificates
"$peregrine" serve --database-url "sqlite://$work/bench.db" --bind "127.0.0.1:$PORT" >"$work/server.log" 2>&1 &
server_pid=$!
wait_for_http "http://127.0.0.1:$PORT/healthz" "$server_pid" "$work/server.log" 30

cat >"$work/haproxy.cfg" <<EOF
global
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend tls
    bind 127.0.0.1:$TLS_PORT ssl crt $work/haproxy.pem alpn http/1.1
    default_backend api
backend api
    server api 127.0.0.1:$PORT
EOF
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
proxy_pid=$!
url="https://127.0.0.1:$TLS_PORT/healthz"
deadline=$((SECONDS + 30))
until curl -fs --cacert "$work/ca.pem" -o /dev/null --max-time 2 "$url"; do
    kill -0 "$proxy_pid" 2>/dev/null || fail "haproxy exited (log: $work/haproxy.log)"
    [ "$SECONDS" -lt "$deadline" ] || fail "$url did not answer within 30s (log: $work/haproxy.log)"
    sleep 0.2
done

# measure TOOL MODE: one run under /usr/bin/time; appends "tool mode rps cpu_seconds requests".
measure() {
    local tool=$1 mode=$2 out="$work/$1-$2.out" cpu="$work/$1-$2.cpu"
    local wrk_close=() peregrine_close=()
    if [ "$mode" = new-connection ]; then
        wrk_close=(-H "Connection: close")
        peregrine_close=(--no-keepalive)
    fi
    case $tool in
        wrk) /usr/bin/time -f "%U %S" -o "$cpu" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "${wrk_close[@]}" "$url" >"$out" ;;
        peregrine) /usr/bin/time -f "%U %S" -o "$cpu" "$peregrine" load "$url" -c "$CONNECTIONS" \
                       --hold-for "${DURATION}s" --ca-cert "$work/ca.pem" "${peregrine_close[@]}" \
                       --report "$work/report-$mode" >"$work/load-$mode.log" 2>&1
                   cp "$work/report-$mode/report.json" "$out" ;;
    esac
    python3 - "$tool" "$mode" "$out" "$cpu" >>"$work/results" <<'PY'
import json, re, sys
tool, mode, out, cpu = sys.argv[1:5]
cpu_seconds = sum(float(x) for x in open(cpu).read().split()[-2:])
text = open(out).read()
if tool == "wrk":
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    errors = re.search(r"Socket errors: (.*)", text)
    if errors:
        print(f"wrk {mode}: socket errors: {errors.group(1)}", file=sys.stderr)
else:
    data = json.loads(text)
    rps = data["overall"]["throughput"]
    requests = data["overall"]["samples"]
    if data["overall"]["failures"]:
        print(f"peregrine {mode}: {data['overall']['failures']} failures: {data['errors'][:3]}", file=sys.stderr)
print(tool, mode, rps, cpu_seconds, requests)
PY
}

echo "target: $url (HAProxy TLS -> peregrine serve), $CONNECTIONS connections, ${DURATION}s per run, $ROUNDS rounds, $(nproc) cores"
for round in $(seq "$ROUNDS"); do
    for mode in keep-alive new-connection; do
        for tool in wrk peregrine; do
            echo "round $round: $tool $mode" >&2
            measure "$tool" "$mode"
        done
    done
done

python3 - "$work/results" <<'PY'
import sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    tool, mode, rps, cpu, requests = line.split()
    rows[(tool, mode)].append((float(rps), float(cpu) / int(requests) * 10000))
def mean(values): return sum(values) / len(values)
print(f"{'mode':<15} {'tool':<10} {'req/s':>9} {'CPU s/10k':>10} {'req/s vs wrk':>13} {'CPU vs wrk':>11}")
for mode in ("keep-alive", "new-connection"):
    wrk = rows[("wrk", mode)]
    wrk_rps, wrk_cpu = mean([r[0] for r in wrk]), mean([r[1] for r in wrk])
    for tool in ("wrk", "peregrine"):
        runs = rows[(tool, mode)]
        rps, cpu = mean([r[0] for r in runs]), mean([r[1] for r in runs])
        print(f"{mode:<15} {tool:<10} {rps:>9.0f} {cpu:>10.3f} {rps / wrk_rps:>13.2f} {cpu / wrk_cpu:>11.2f}")
PY
