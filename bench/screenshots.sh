#!/usr/bin/env bash
# Makes the pictures of docs/live.md again: the terminal view of `peregrine load` (captured
# from tmux as text, and drawn to PNG) and the live dashboard (headless Chromium), from a
# real run against `peregrine serve` on this machine. Writes docs/img/live-terminal.txt,
# docs/img/live-terminal.png and docs/img/live-dashboard.png. About 30 s.
#
#   bash bench/screenshots.sh            # PROFILE=dev (the debug build) by default
#
# Needs: tmux, chromium, curl, python3.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d -t peregrine-screenshots.XXXXXX)
# shellcheck source=bench/lib.sh
source bench/lib.sh

PROFILE=${PROFILE:-dev}
ports=$(free_ports 2)
PORT=${ports%%$'\n'*}
DASHBOARD_PORT=${ports##*$'\n'}
session="peregrine-screenshots-$$"
server_pid=""
stop_everything() {
    tmux kill-session -t "$session" 2>/dev/null || true
    stop_pid "$server_pid"
}

need tmux "apt-get install -y tmux"
need chromium "apt-get install -y chromium"
need curl "apt-get install -y curl"
need python3 "apt-get install -y python3"
cargo build --profile "$PROFILE" --quiet --bin peregrine || fail "cargo build --profile $PROFILE failed"
dir=$PROFILE; [ "$PROFILE" = dev ] && dir=debug
peregrine=$PWD/target/$dir/peregrine
mkdir -p docs/img

"$peregrine" serve --database-url "sqlite://$work/shots.db" --bind "127.0.0.1:$PORT" >"$work/server.log" 2>&1 &
server_pid=$!
wait_for_http "http://127.0.0.1:$PORT/healthz" "$server_pid" "$work/server.log" 30
"$peregrine" db seed --users 20 --database-url "sqlite://$work/shots.db" >/dev/null 2>&1 || true

# Three labels, one of them failing now and then (a user that does not exist), a criterion.
cat >"$work/watch.yml" <<YML
execution:
- concurrency: 20
  ramp-up: 6s
  hold-for: 12s
  throughput: 1500
  scenario: browse
scenarios:
  browse:
    requests:
    - url: http://127.0.0.1:$PORT/users/
      label: list users
    - url: http://127.0.0.1:$PORT/users/7
      label: one user
    - url: http://127.0.0.1:$PORT/users/999999
      label: missing user
reporting:
- module: passfail
  criteria:
  - p99>500ms for 5s, stop as failed
  - failures>50%, continue as failed
YML

# The terminal: 100 × 24, captured 12 s in (during the hold).
tmux new-session -d -s "$session" -x 100 -y 24 \
    "cd $work && $peregrine load watch.yml --dashboard 127.0.0.1:$DASHBOARD_PORT --report out; sleep 60"
sleep 12
tmux capture-pane -p -t "$session" | sed -e 's/[[:space:]]*$//' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' >docs/img/live-terminal.txt

# The dashboard: Chromium's virtual time waits for the event stream, which ends with the
# verdict, so the page is taken with the whole run drawn and the verdict shown.
profile=$(mktemp -d -p "$work")
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
    --hide-scrollbars --window-size=1100,1180 --virtual-time-budget=30000 \
    --screenshot="$work/dashboard.png" "http://127.0.0.1:$DASHBOARD_PORT/" >"$work/chromium.log" 2>&1 ||
    fail "chromium could not take the dashboard: $(tail -3 "$work/chromium.log")"
cp "$work/dashboard.png" docs/img/live-dashboard.png

# The terminal text drawn as a terminal would, for the docs' picture.
python3 - docs/img/live-terminal.txt "$work/terminal.html" <<'PY'
import html, sys
text = open(sys.argv[1]).read().rstrip("\n")
open(sys.argv[2], "w").write(
    "<!doctype html><meta charset=utf-8><body style='margin:0;background:#1d232b'>"
    "<pre style='margin:0;padding:12px;color:#e6e9ed;font:14px/1.25 \"DejaVu Sans Mono\",monospace'>"
    + html.escape(text) + "</pre>")
PY
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
    --hide-scrollbars --window-size=900,$(($(wc -l <docs/img/live-terminal.txt) * 18 + 26)) \
    --screenshot="$work/terminal.png" "file://$work/terminal.html" >>"$work/chromium.log" 2>&1 ||
    fail "chromium could not draw the terminal text"
cp "$work/terminal.png" docs/img/live-terminal.png
ls -l docs/img/live-*
