#!/usr/bin/env bash
# Idle cost of watching a fleet: CPU seconds, frames drawn and RSS of the dashboard over one
# quiet minute, connected to 1, 8 and 32 idle simulated servers at 120x40.
#
#   cargo build --release && benches/fleet_idle.sh
#
# Needs tmux. Environment: BIN (default target/release/comfytop), IDLE_SECS (default 60),
# FLEETS (default "1 8 32").
set -euo pipefail

BIN=${BIN:-target/release/comfytop}
IDLE_SECS=${IDLE_SECS:-60}
FLEETS=${FLEETS:-1 8 32}
SESSION=comfytop-fleet-$$
WORK=$(mktemp -d)
TICKS=$(getconf CLK_TCK)

cleanup() {
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    if [[ -n "${SIM_PID:-}" ]]; then kill "$SIM_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

printf '%-8s %12s %14s %10s %10s\n' servers "CPU-s/min" "frames/min" "RSS MiB" "peak MiB"
for n in $FLEETS; do
    "$BIN" sim --listen 127.0.0.1:0 --servers "$n" >"$WORK/sim.out" 2>&1 &
    SIM_PID=$!
    for _ in $(seq 100); do
        [[ $(grep -cE 'http://127\.0\.0\.1:[0-9]+' "$WORK/sim.out" || true) -ge $n ]] && break
        sleep 0.1
    done
    mapfile -t URLS < <(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$WORK/sim.out")
    [[ ${#URLS[@]} -eq $n ]] || { echo "the simulator did not start $n servers:"; cat "$WORK/sim.out"; exit 1; }

    # `exec` makes the pane's process the dashboard itself, so its pid is the pane's.
    tmux new-session -d -s "$SESSION" -x 120 -y 40 \
        "COMFYTOP_LOG=comfytop=debug COMFYTOP_STATE_DIR=$WORK/state exec $BIN ${URLS[*]} --log $WORK/dash.log --notify off"
    PID=$(tmux display-message -p -t "$SESSION" '#{pane_pid}')
    cpu() { awk -v t="$TICKS" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$PID/stat"; }
    frames() { grep -c 'frame drawn' "$WORK/dash.log" || true; }
    sleep 10 # connect, first fetches, first frames
    cpu0=$(cpu); frames0=$(frames)
    sleep "$IDLE_SECS"
    cpu1=$(cpu); frames1=$(frames)
    rss=$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$PID/status")
    peak=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$PID/status")
    per_minute() { awk -v a="$1" -v b="$2" -v s="$IDLE_SECS" 'BEGIN { printf "%.3f", (b - a) * 60 / s }'; }
    printf '%-8s %12s %14s %10s %10s\n' "$n" "$(per_minute "$cpu0" "$cpu1")" \
        "$(per_minute "$frames0" "$frames1")" "$rss" "$peak"
    tmux send-keys -t "$SESSION" q
    sleep 1
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    kill "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
    SIM_PID=
    rm -f "$WORK/dash.log"
done
