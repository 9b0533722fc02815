#!/usr/bin/env bash
# Memory of comfytop clients while ANOTHER client queues a huge prompt on a simulated server:
#   graph  a 47 MB API workflow (330,000 EmptyImage + one PreviewImage), queued by `comfytop
#          submit` (its time to be accepted is the simulator's, plus the upload);
#   error  a LabRaiseError node whose message is 50 MB, queued with curl.
# For each, a fresh simulator, `comfytop watch URL` and the dashboard (in tmux) are started,
# and their RSS is read from /proc: before the prompt, peak (VmHWM) and 5 s after it finished.
#
#   cargo build --release && benches/big_prompt_rss.sh
#
# Needs tmux, curl and python3. Environment: BIN (default target/release/comfytop), SIM_BIN (the
# simulator's binary, default BIN: an older client can be measured against a newer one), NODES
# (default 330000), MESSAGE_MB (default 50), SCENARIOS (default "graph error").
set -euo pipefail

BIN=${BIN:-target/release/comfytop}
SIM_BIN=${SIM_BIN:-$BIN}
NODES=${NODES:-330000}
MESSAGE_MB=${MESSAGE_MB:-50}
SCENARIOS=${SCENARIOS:-graph error}
WORK=$(mktemp -d)
SESSION=comfytop-rss-$$

stop_all() {
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    for pid in ${WATCH_PID:-} ${SIM_PID:-}; do kill "$pid" 2>/dev/null || true; done
    WATCH_PID=""; SIM_PID=""
    wait 2>/dev/null || true
}
trap 'stop_all; rm -rf "$WORK"' EXIT

python3 - "$NODES" "$MESSAGE_MB" "$WORK" <<'PY'
import json, sys
nodes, mb, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
graph = {str(i): {"class_type": "EmptyImage",
                  "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
                  "_meta": {"title": "Empty Image"}} for i in range(1, nodes + 1)}
graph[str(nodes + 1)] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]},
                         "_meta": {"title": "Preview Image"}}
json.dump(graph, open(f"{work}/graph.json", "w"))
message = "x" * (mb * 1024 * 1024)
body = {"prompt": {"1": {"class_type": "LabRaiseError", "inputs": {"message": message}}},
        "client_id": "someone-else"}
json.dump(body, open(f"{work}/error.json", "w"))
PY
printf 'graph.json %s MB, error.json %s MB\n' \
    "$(( $(stat -c %s "$WORK/graph.json") / 1048576 ))" "$(( $(stat -c %s "$WORK/error.json") / 1048576 ))"

kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

for scenario in $SCENARIOS; do
    "$SIM_BIN" sim --listen 127.0.0.1:0 >"$WORK/sim.out" 2>&1 &
    SIM_PID=$!
    URL=""
    for _ in $(seq 100); do
        URL=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$WORK/sim.out" | head -n1 || true)
        [[ -n "$URL" ]] && break
        sleep 0.1
    done
    [[ -n "$URL" ]] || { echo "the simulator did not say where it listens"; exit 1; }
    "$BIN" watch "$URL" >"$WORK/watch.out" 2>&1 &
    WATCH_PID=$!
    tmux new-session -d -s "$SESSION" -x 120 -y 40 "exec $BIN $URL"
    DASH_PID=$(tmux display-message -p -t "$SESSION" '#{pane_pid}')
    sleep 4
    dash_before=$(kib "$DASH_PID" VmRSS); watch_before=$(kib "$WATCH_PID" VmRSS)
    sim_before=$(kib "$SIM_PID" VmRSS)

    start=$(date +%s.%N)
    if [[ $scenario == graph ]]; then
        PROMPT_ID=$("$BIN" submit "$WORK/graph.json" "$URL")
    else
        PROMPT_ID=$(curl -sf -X POST -H 'Content-Type: application/json' \
            --data-binary "@$WORK/error.json" "$URL/prompt" \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["prompt_id"])')
    fi
    accepted=$(date +%s.%N)
    until curl -sf "$URL/history/$PROMPT_ID" -o /dev/null -w '%{size_download}' \
        | awk '{ exit !($1 > 2) }'; do sleep 0.5; done
    finished=$(date +%s.%N)
    sleep 5 # the clients fetch the history entry and settle
    printf '%-5s accepted in %.1f s, finished %.1f s later\n' "$scenario" \
        "$(echo "$accepted - $start" | bc)" "$(echo "$finished - $accepted" | bc)"
    for who in dashboard watch sim; do
        case $who in
            dashboard) pid=$DASH_PID; before=$dash_before ;;
            watch) pid=$WATCH_PID; before=$watch_before ;;
            sim) pid=$SIM_PID; before=$sim_before ;;
        esac
        printf '  %-9s RSS before %7s MiB  peak %7s MiB  after %7s MiB\n' "$who" \
            "$(mib "$before")" "$(mib "$(kib "$pid" VmHWM)")" "$(mib "$(kib "$pid" VmRSS)")"
    done
    stop_all
done
