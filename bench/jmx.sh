#!/usr/bin/env bash
# The same load as a JMeter plan and as its Taurus YAML equivalent, side by side against one
# local `peregrine serve` (GET /users/1 on SQLite): both compile to the same plan, so their
# request rates should match. Alternates JMX and YAML for ROUNDS rounds of DURATION seconds
# with CONNECTIONS threads each and prints req/s per run and the JMX/YAML ratio. Not a CI test.
#
#   flock /tmp/bench.lock bash bench/jmx.sh          # CONNECTIONS=20 DURATION=5 ROUNDS=3
#   PEREGRINE=target/debug/peregrine ROUNDS=2 flock /tmp/bench.lock bash bench/jmx.sh
#
# PEREGRINE names the binary to use (default: a release build made here). Needs python3, curl.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d -t peregrine-jmx.XXXXXX)
# shellcheck source=bench/lib.sh
source bench/lib.sh

CONNECTIONS=${CONNECTIONS:-20}
DURATION=$(seconds "${DURATION:-5}" DURATION)
ROUNDS=${ROUNDS:-3}
PORT=$(free_ports 1)
server_pid=""
stop_everything() { stop_pid "$server_pid"; }

need python3 "apt-get install -y python3"
need curl "apt-get install -y curl"
if [ -z "${PEREGRINE:-}" ]; then
    cargo build --release --quiet --bin peregrine || fail "cargo build --release failed"
    PEREGRINE=target/release/peregrine
fi
[ -x "$PEREGRINE" ] || fail "PEREGRINE=$PEREGRINE is not an executable"

"$PEREGRINE" serve --database-url "sqlite://$work/bench.db" --bind "127.0.0.1:$PORT" --seed 5 >"$work/server.log" 2>&1 &
server_pid=$!
wait_for_http "http://127.0.0.1:$PORT/users/1" "$server_pid" "$work/server.log" 30

cat >"$work/plan.jmx" <<JMX
<?xml version="1.0" encoding="UTF-8"?>
<jmeterTestPlan version="1.2" properties="5.0" jmeter="5.6.3">
  <hashTree>
    <TestPlan guiclass="TestPlanGui" testclass="TestPlan" testname="Bench"/>
    <hashTree>
      <ThreadGroup guiclass="ThreadGroupGui" testclass="ThreadGroup" testname="Readers">
        <elementProp name="ThreadGroup.main_controller" elementType="LoopController" guiclass="LoopControlPanel" testclass="LoopController" testname="Loop Controller">
          <boolProp name="LoopController.continue_forever">false</boolProp>
          <intProp name="LoopController.loops">-1</intProp>
        </elementProp>
        <stringProp name="ThreadGroup.num_threads">$CONNECTIONS</stringProp>
        <stringProp name="ThreadGroup.ramp_time">0</stringProp>
        <boolProp name="ThreadGroup.scheduler">true</boolProp>
        <stringProp name="ThreadGroup.duration">$DURATION</stringProp>
      </ThreadGroup>
      <hashTree>
        <HTTPSamplerProxy guiclass="HttpTestSampleGui" testclass="HTTPSamplerProxy" testname="user">
          <stringProp name="HTTPSampler.domain">127.0.0.1</stringProp>
          <stringProp name="HTTPSampler.port">$PORT</stringProp>
          <stringProp name="HTTPSampler.path">/users/1</stringProp>
          <stringProp name="HTTPSampler.method">GET</stringProp>
          <boolProp name="HTTPSampler.follow_redirects">true</boolProp>
          <boolProp name="HTTPSampler.use_keepalive">true</boolProp>
        </HTTPSamplerProxy>
        <hashTree/>
      </hashTree>
    </hashTree>
  </hashTree>
</jmeterTestPlan>
JMX
cat >"$work/plan.yml" <<YAML
execution:
- concurrency: $CONNECTIONS
  hold-for: ${DURATION}s
  scenario: Readers
scenarios:
  Readers:
    store-cookie: false
    requests:
    - url: http://127.0.0.1:$PORT/users/1
      label: user
YAML

echo "target: http://127.0.0.1:$PORT/users/1, $CONNECTIONS threads, ${DURATION}s per run, $ROUNDS rounds, $(nproc) cores (shared: figures vary with other load)"
for round in $(seq "$ROUNDS"); do
    for form in jmx yml; do
        "$PEREGRINE" load "$work/plan.$form" --report "$work/$form-$round" >"$work/$form-$round.log" 2>&1 ||
            fail "peregrine load plan.$form failed: $(tail -n 5 "$work/$form-$round.log")"
        python3 - "$form" "$round" "$work/$form-$round/report.json" >>"$work/results" <<'PY'
import json, sys
data = json.load(open(sys.argv[3]))
print(sys.argv[1], sys.argv[2], data["overall"]["throughput"], data["overall"]["failures"])
PY
    done
done
python3 - "$work/results" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
by_round = {}
for form, rnd, rps, failures in rows:
    by_round.setdefault(rnd, {})[form] = (float(rps), int(failures))
print(f"{'round':>5} {'jmx req/s':>10} {'yaml req/s':>11} {'jmx/yaml':>9}")
ratios = []
for rnd, forms in sorted(by_round.items()):
    j, y = forms["jmx"][0], forms["yml"][0]
    ratios.append(j / y)
    print(f"{rnd:>5} {j:>10.0f} {y:>11.0f} {j / y:>9.3f}")
    if forms["jmx"][1] or forms["yml"][1]:
        print(f"      failures: jmx {forms['jmx'][1]}, yaml {forms['yml'][1]}")
print(f"mean jmx/yaml ratio: {sum(ratios) / len(ratios):.3f}")
PY
