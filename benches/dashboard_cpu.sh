#!/usr/bin/env bash
# CPU time and frames drawn by the dashboard: first connected to an idle simulated server, then
# while it follows one 200-step run that it queued itself (so it gets every progress event).
#
#   cargo build --release && benches/dashboard_cpu.sh
#
# Needs tmux, curl and python3. Environment: BIN (default target/release/comfytop), IDLE_SECS
# (default 60), STEPS (default 200), STEP_DELAY (seconds per step, default 0.05).
set -euo pipefail

BIN=${BIN:-target/release/comfytop}
IDLE_SECS=${IDLE_SECS:-60}
STEPS=${STEPS:-200}
STEP_DELAY=${STEP_DELAY:-0.05}
SESSION=comfytop-bench-$$
WORK=$(mktemp -d)
HERE=$(cd "$(dirname "$0")" && pwd)
WORKFLOW="$HERE/../tests/fixtures/comfyui-0.3.64/workflows/slow_steps_full.json"
TICKS=$(getconf CLK_TCK)

cleanup() {
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    if [[ -n "${SIM_PID:-}" ]]; then kill "$SIM_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" sim --listen 127.0.0.1:0 >"$WORK/sim.out" 2>&1 &
SIM_PID=$!
URL=""
for _ in $(seq 100); do
    URL=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$WORK/sim.out" | head -n1 || true)
    [[ -n "$URL" ]] && break
    sleep 0.1
done
[[ -n "$URL" ]] || { echo "the simulator did not say where it listens:"; cat "$WORK/sim.out"; exit 1; }

# `exec` makes the pane's process the dashboard itself, so its pid is the pane's.
tmux new-session -d -s "$SESSION" -x 120 -y 40 \
    "COMFYTOP_LOG=comfytop=debug exec $BIN $URL --log $WORK/dash.log"
PID=$(tmux display-message -p -t "$SESSION" '#{pane_pid}')

cpu_seconds() { # user + system time of $PID so far
    awk -v t="$TICKS" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$PID/stat"
}
frames() { grep -c 'frame drawn' "$WORK/dash.log" || true; }

sleep 5 # connect, first fetches, first frames
cpu0=$(cpu_seconds); frames0=$(frames)
sleep "$IDLE_SECS"
cpu1=$(cpu_seconds); frames1=$(frames)

CLIENT_ID=$(grep -oE 'client_id=[0-9a-f-]+' "$WORK/dash.log" | head -n1 | cut -d= -f2)
BODY=$(python3 - "$WORKFLOW" "$CLIENT_ID" "$STEPS" "$STEP_DELAY" <<'EOF'
import json, sys
path, client_id, steps, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
prompt = json.load(open(path))
prompt = prompt.get("prompt", prompt)
for node in prompt.values():
    if node["class_type"] == "LabSlowSteps":
        node["inputs"]["steps"] = steps
        node["inputs"]["delay"] = delay
        node["inputs"]["seed"] = 4242
print(json.dumps({"prompt": prompt, "client_id": client_id}))
EOF
)
PROMPT_ID=$(curl -sf -X POST -H 'Content-Type: application/json' -d "$BODY" "$URL/prompt" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["prompt_id"])')
start=$(date +%s.%N)
until curl -sf "$URL/history/$PROMPT_ID" | grep -q '"status"'; do sleep 0.2; done
end=$(date +%s.%N)
sleep 1 # the last status and executing frames
cpu2=$(cpu_seconds); frames2=$(frames)
RSS=$(awk '/VmRSS/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$PID/status")

tmux send-keys -t "$SESSION" q
sleep 1

awk -v a="$cpu0" -v b="$cpu1" -v c="$cpu2" -v fa="$frames0" -v fb="$frames1" -v fc="$frames2" \
    -v idle="$IDLE_SECS" -v steps="$STEPS" -v s="$start" -v e="$end" 'BEGIN {
    printf "idle %d s:            %.2f CPU s, %d frames\n", idle, b - a, fb - fa
    printf "%d-step run (%.1f s): %.2f CPU s, %d frames\n", steps, e - s, c - b, fc - fb
}'
echo "resident memory after the run: $RSS"
