#!/usr/bin/env python3
"""How fast `comfytop watch` and the dashboard catch up with a burst of prompts from another
client, and how their memory grows over several bursts.

    cargo build --release && python3 benches/burst_catchup.py

Starts the simulated ComfyUI (`comfytop sim`, 1 ms per step), then `comfytop watch --json` on
it, then posts BURST prompts (distinct seeds, so nothing is cached) as another client, BURSTS
times. For each burst it reports when the server went idle (seconds after the first post), how
long after that the watcher printed its last line about a prompt (its catch-up time), how many
prompts it reported ended, its RSS and its CPU time so far. With DASHBOARD=1 (needs tmux) the
dashboard runs too, in a 120x40 tmux pane: its catch-up time is when its screen first says the
queue is empty after the server went idle, with its RSS and CPU time beside.

Environment: BIN (default target/release/comfytop), BURST (default 10000), BURSTS (default 3),
STEP_MS (default 1), QUIET (seconds without a prompt line that count as caught up, default 5),
DASHBOARD (default 0).
"""

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("BIN", os.path.join(HERE, "..", "target", "release", "comfytop"))
BURST = int(os.environ.get("BURST", "10000"))
BURSTS = int(os.environ.get("BURSTS", "3"))
STEP_MS = os.environ.get("STEP_MS", "1")
QUIET = float(os.environ.get("QUIET", "5"))
DASHBOARD = os.environ.get("DASHBOARD", "0") == "1"
WORKFLOW = os.path.join(
    HERE, "..", "tests", "fixtures", "comfyui-0.3.64", "workflows", "small_save.json"
)
TICKS = os.sysconf("SC_CLK_TCK")


class Watcher:
    """Reads the watcher's lines, noting when the last one about a prompt came."""

    def __init__(self, url):
        self.proc = subprocess.Popen(
            [BIN, "watch", url, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.lock = threading.Lock()
        self.last_prompt_line = time.monotonic()
        self.ended = 0
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind not in ("prompt", "history"):
                continue
            with self.lock:
                self.last_prompt_line = time.monotonic()
                if kind == "prompt" and event.get("outcome") not in (None, "queued", "running"):
                    self.ended += 1
                elif kind == "history":
                    self.ended += sum(
                        v for v in event.values() if isinstance(v, int) and not isinstance(v, bool)
                    )



def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Dashboard:
    """The dashboard in a tmux pane, read through capture-pane."""

    def __init__(self, url):
        self.session = f"comfytop-burst-{os.getpid()}"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.session, "-x", "120", "-y", "40",
             f"exec {BIN} {url}"],
            check=True,
        )
        self.pid = int(subprocess.run(
            ["tmux", "display-message", "-p", "-t", self.session, "#{pane_pid}"],
            check=True, capture_output=True, text=True,
        ).stdout)

    def shows_empty_queue(self):
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.session],
            capture_output=True, text=True,
        ).stdout
        return "queue is empty" in screen and "queue 0" in screen

    def stop(self):
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def request(conn, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return json.loads(response.read() or b"null")


def main():
    sim = subprocess.Popen(
        [BIN, "sim", "--listen", "127.0.0.1:0", "--step-ms", STEP_MS],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = None
    for line in sim.stdout:
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if match:
            url = match.group(0)
            break
    if url is None:
        sys.exit("the simulator did not say where it listens")
    threading.Thread(target=lambda: [None for _ in sim.stdout], daemon=True).start()
    host = url.removeprefix("http://")
    watcher = Watcher(url)
    dashboard = Dashboard(url) if DASHBOARD else None
    time.sleep(2)
    with open(WORKFLOW) as f:
        prompt = json.load(f)
    prompt["1"]["inputs"]["steps"] = 1
    conn = http.client.HTTPConnection(host)
    poll = http.client.HTTPConnection(host)
    seed = 0
    print(f"burst of {BURST}, step {STEP_MS} ms, {BIN}")
    header = "burst  server_idle_s  catch_up_s  reported_ended  rss_mib  cpu_s"
    if dashboard:
        header += "  dash_catch_up_s  dash_rss_mib  dash_cpu_s"
    print(header)
    try:
        for burst in range(1, BURSTS + 1):
            start = time.monotonic()
            for _ in range(BURST):
                seed += 1
                prompt["1"]["inputs"]["seed"] = seed
                body = json.dumps({"prompt": prompt, "client_id": "bench-poster"})
                request(conn, "POST", "/prompt", body)
            while True:
                queue = request(poll, "GET", "/queue")
                if not queue["queue_running"] and not queue["queue_pending"]:
                    break
                time.sleep(0.1)
            idle = time.monotonic()
            dash_caught_up = None
            if dashboard:
                while not dashboard.shows_empty_queue() and time.monotonic() - idle < 300:
                    time.sleep(0.1)
                dash_caught_up = time.monotonic() - idle
            while True:
                with watcher.lock:
                    last = watcher.last_prompt_line
                if time.monotonic() - max(last, idle) > QUIET:
                    break
                if time.monotonic() - idle > 300:
                    print("  the watcher did not settle within 300 s")
                    break
                time.sleep(0.2)
            with watcher.lock:
                catch_up = max(0.0, watcher.last_prompt_line - idle)
                ended = watcher.ended
            row = (
                f"{burst:5}  {idle - start:13.1f}  {catch_up:10.2f}  {ended:14}"
                f"  {rss_mib(watcher.proc.pid):7.1f}  {cpu_s(watcher.proc.pid):5.1f}"
            )
            if dashboard:
                row += (
                    f"  {dash_caught_up:15.2f}  {rss_mib(dashboard.pid):12.1f}"
                    f"  {cpu_s(dashboard.pid):10.1f}"
                )
            print(row, flush=True)
    finally:
        if dashboard:
            dashboard.stop()
        watcher.proc.terminate()
        sim.terminate()
        watcher.proc.wait()
        sim.wait()


if __name__ == "__main__":
    main()
