#!/usr/bin/env python3
"""comfytop beside the two Python floors against a real ComfyUI, in turns, without the tab:
the comfytop dashboard in a 120x40 pseudo-terminal, ComfyUI's example client
(benches/example_client.py, websocket-client) and the raw-socket client
(benches/floor_client.py), all connected throughout. Each round queues the same paced run as
benches/browser_tab.py once under each client's id, the order turning every round; the
headline is each client's median over its own runs.

    cp benches/comfyui_paced_sampler.py ~/ComfyUI/custom_nodes/   # then start ComfyUI
    cargo build --release && python3 benches/real_floors.py

CPU is the sum of the threads' time on the CPU from /proc/PID/task/TID/schedstat
(nanoseconds, where /proc/PID/stat counts 10 ms ticks), from the run's start to a second after
its history entry appears.

Environment: COMFYUI_URL (default http://127.0.0.1:8188), BIN (default
target/release/comfytop), ROUNDS (5), STEPS (200), EXAMPLE_PYTHON (a Python with
websocket-client; needed).
"""

import os
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ left in benches/
import browser_tab  # noqa: E402  (the paced workflow, queuing and waiting; no side effects)
import whole_process  # noqa: E402  (the pty dashboard and /proc helpers; no side effects)

URL = browser_tab.URL
ROUNDS = int(os.environ.get("ROUNDS", "5"))
STEPS = browser_tab.STEPS


def cpu_seconds_of_threads(pid):
    """Time on the CPU of all the process's threads, in seconds, to the nanosecond."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that ended between the listing and the read
    return total / 1e9


def main():
    if not whole_process.example_client_at_hand():
        raise SystemExit("set EXAMPLE_PYTHON to a Python with websocket-client")
    whole_process.BIN = browser_tab.BIN
    version = subprocess.run([whole_process.BIN, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version}; {os.cpu_count()} cores, {os.uname().release}; {ROUNDS} rounds of {STEPS} steps", flush=True)
    dash = whole_process.Dashboard([URL], "--image-protocol", "halfblocks")
    floors = []
    try:
        time.sleep(5)
        clients = {"comfytop": (dash.proc.pid, dash.client_id())}
        for name, python, script in (
            ("example client", whole_process.EXAMPLE_PYTHON, "example_client.py"),
            ("raw floor", sys.executable, "floor_client.py"),
        ):
            client_id = f"comfytop-bench-{name.replace(' ', '-')}-{random.randrange(1 << 30)}"
            proc = subprocess.Popen([python, os.path.join(HERE, script), URL, client_id], stdout=subprocess.DEVNULL)
            floors.append(proc)
            clients[name] = (proc.pid, client_id)
        time.sleep(3)
        # The server's first run, off the clock.
        browser_tab.run_prompt(browser_tab.workflow(20, random.randrange(1 << 40)), "comfytop-bench-warmup")
        runs = {name: [] for name in clients}
        names = list(clients)
        for round_ in range(ROUNDS):
            turn = round_ % len(names)
            for name in names[turn:] + names[:turn]:
                pid, client_id = clients[name]
                before, frames = cpu_seconds_of_threads(pid), dash.sample()[1]
                browser_tab.run_prompt(browser_tab.workflow(STEPS, random.randrange(1 << 40)), client_id)
                runs[name].append(cpu_seconds_of_threads(pid) - before)
                drawn = f", {dash.sample()[1] - frames} frames" if name == "comfytop" else ""
                print(f"round {round_ + 1}: {name:<15} {runs[name][-1]:.3f} CPU-s{drawn}", flush=True)
                time.sleep(2)
    finally:
        for proc in floors:
            proc.kill()
            proc.wait()
        dash.stop()
    print()
    print("| client | median CPU-s | runs |")
    print("|---|---|---|")
    for name, values in runs.items():
        print(f"| {name} | {statistics.median(values):.3f} | {' '.join(f'{v:.3f}' for v in values)} |")
    example = statistics.median(runs["example client"])
    print(f"\ncomfytop / example client: {statistics.median(runs['comfytop']) / example:.2f}")


if __name__ == "__main__":
    main()
