#!/usr/bin/env python3
"""What watching a real ComfyUI costs, side by side: ComfyUI's own web frontend in a headless
Chromium tab (what comfytop replaces), the comfytop dashboard in a 120x40 pseudo-terminal, and
a bare Python client that only parses the frames (benches/floor_client.py), as a floor, and,
when websocket-client is at hand, the client of ComfyUI's own websocket example doing the same
(benches/example_client.py), as a second floor.

    cp benches/comfyui_paced_sampler.py ~/ComfyUI/custom_nodes/
    cd ~/ComfyUI && python main.py --cpu --listen 127.0.0.1 --port 8188 &
    apt-get install chromium          # or point CHROMIUM at a Chrome/Chromium binary
    cargo build --release && python3 benches/browser_tab.py

All the clients stay connected for the whole run. The measured windows:
  idle          IDLE_SECS with nothing running (after the tab has loaded and a warm-up prompt)
  3 runs        a STEPS-step run of ComfytopPacedSampler (benches/comfyui_paced_sampler.py: a
                model-free node that reports progress and a 256 px JPEG preview per step, 20
                steps a second, through the same call as a sampler's latent preview) into a
                PreviewImage, queued once under each client's id in turn: the tab's, comfytop's,
                the floor's (and the example client's)
ComfyUI sends a prompt's progress, progress_state and preview frames only to the client id that
queued it, so each client's headline is the run it owns; in the others' runs it gets the
status broadcasts only (comfytop more, if the comfytop bridge is installed on the server: it
then watches every prompt live, previews included). The tab has the same workflow loaded in
its canvas, so its previews show on the node, as when a user queues from the tab. A headless
page counts as visible: its canvas loop runs at 60 frames a second, as in a foreground tab (a
background tab is throttled).

CPU is utime+stime from /proc/PID/stat at each window's start and end; for Chromium, summed over
its whole process tree, plus cutime+cstime so that children that ended and were reaped inside
the tree still count (a process that starts and ends between two samples without being reaped
inside the tree is missed). Peak RSS is VmHWM for comfytop and the floors; for Chromium it is the
largest sum of VmRSS over its tree, and PSS (/proc/PID/smaps_rollup, shared pages split among
the processes sharing them) is given for all of them; both sampled once a second. For comfytop
also frames drawn (counted in what it writes, see whole_process.py) and bytes written to its
terminal.

Environment: COMFYUI_URL (default http://127.0.0.1:8188), BIN (default
target/release/comfytop), CHROMIUM (default /usr/bin/chromium), IDLE_SECS (60), STEPS (200),
EXAMPLE_PYTHON (a Python with websocket-client for the second floor; default this one, and the
second floor is left out when it cannot import websocket-client).
Needs python3 only (the DevTools protocol is spoken over a small WebSocket client here); Chromium
runs headless with --no-sandbox, so it can run as root.
"""

import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ left in benches/
import whole_process  # noqa: E402  (the pty dashboard and /proc helpers; no side effects)

URL = os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188").rstrip("/")
BIN = os.environ.get("BIN", whole_process.BIN)
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
IDLE_SECS = float(os.environ.get("IDLE_SECS", "60"))
STEPS = int(os.environ.get("STEPS", "200"))
STEP_SECONDS = 0.05
TICKS = os.sysconf("SC_CLK_TCK")
COMFYTOP_ID = "comfytop-bench"
FLOOR_ID = "floor-bench"
EXAMPLE_ID = "example-bench"
whole_process.BIN = BIN


def call(method, path, body=None):
    parts = urllib.parse.urlsplit(URL)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=60)
    data = json.dumps(body) if body is not None else None
    conn.request(method, path, data, {"Content-Type": "application/json"})
    answer = conn.getresponse()
    reply = answer.read()
    conn.close()
    if answer.status != 200:
        raise SystemExit(f"{method} {path}: HTTP {answer.status} {reply[:300]!r}")
    return json.loads(reply) if reply else None


def workflow(steps, seed):
    return {
        "1": {
            "class_type": "ComfytopPacedSampler",
            "_meta": {"title": "Paced Sampler"},
            "inputs": {
                "steps": steps,
                "step_seconds": STEP_SECONDS,
                "width": 512,
                "height": 512,
                "preview_size": 256,
                "seed": seed,
            },
        },
        "2": {"class_type": "PreviewImage", "_meta": {"title": "Preview Image"}, "inputs": {"images": ["1", 0]}},
    }


def run_prompt(prompt, client_id, midway=None):
    """Queue, wait for the history entry, then a second for the clients' last frames. midway()
    is called once, about halfway through the steps."""
    prompt_id = call("POST", "/prompt", {"prompt": prompt, "client_id": client_id})["prompt_id"]
    t0 = time.monotonic()
    half = prompt["1"]["inputs"]["steps"] * STEP_SECONDS / 2
    while not call("GET", f"/history/{prompt_id}"):
        if midway and time.monotonic() - t0 > half:
            midway()
            midway = None
        time.sleep(0.25)
    status = call("GET", f"/history/{prompt_id}")[prompt_id]["status"]
    if status.get("status_str") != "success":
        raise SystemExit(f"prompt {prompt_id} did not succeed: {status}")
    time.sleep(1)


# /proc readings ------------------------------------------------------------------------------


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_tree(root):
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                children.setdefault(int(stat_fields(name)[1]), []).append(int(name))
            except (OSError, IndexError):
                pass  # ended while we looked
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += children.get(pid, [])
    return pids


def tree_cpu_seconds(root):
    """utime+stime of every process in the tree, plus cutime+cstime: what reaped children used."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = stat_fields(pid)
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])
    return total / TICKS


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid):
    try:
        return whole_process.status_kib(pid, "VmRSS")
    except OSError:
        return 0


# Chromium and the DevTools protocol ------------------------------------------------------------


class DevTools:
    """Just enough of a WebSocket client for the DevTools protocol: send a command, read frames
    until its answer (no domain is enabled, so nothing else is pushed)."""

    def __init__(self, ws_url):
        parts = urllib.parse.urlsplit(ws_url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.stream = self.sock.makefile("rb")
        status = self.stream.readline()
        if b" 101 " not in status:
            raise SystemExit(f"DevTools refused the WebSocket: {status!r}")
        while self.stream.readline() not in (b"\r\n", b""):
            pass
        self.last_id = 0

    def send(self, method, **params):
        self.last_id += 1
        payload = json.dumps({"id": self.last_id, "method": method, "params": params}).encode()
        # A client's frames must be masked.
        mask = os.urandom(4)
        size = len(payload)
        header = bytes([0x81])
        if size < 126:
            header += bytes([0x80 | size])
        elif size < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", size)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)
        while True:
            answer = json.loads(self.read_message())
            if answer.get("id") == self.last_id:
                if "error" in answer:
                    raise SystemExit(f"DevTools {method}: {answer['error']}")
                return answer["result"]

    def read_message(self):
        message = b""
        while True:
            head = self.stream.read(2)
            if len(head) < 2:
                raise SystemExit("the DevTools WebSocket closed")
            size = head[1] & 0x7F
            if size == 126:
                size = struct.unpack(">H", self.stream.read(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self.stream.read(8))[0]
            message += self.stream.read(size)
            if head[0] & 0x0F == 8:
                raise SystemExit("the DevTools WebSocket closed")
            if head[0] & 0x80:
                return message

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise SystemExit(f"in the tab: {result['exceptionDetails'].get('text')} {expression[:80]!r}")
        return result["result"].get("value")

    def close(self):
        self.sock.close()


# Counts what the tab's ComfyUI API object hands to the frontend, per window.
COUNT_EVENTS_JS = """(() => {
  const api = window.comfyAPI.api.api;
  const seen = (window.__benchSeen = {});
  const types = ["status", "execution_start", "executing", "progress", "progress_state",
                 "executed", "execution_success", "b_preview", "b_preview_with_metadata"];
  for (const type of types) {
    api.addEventListener(type, (event) => {
      const seen = window.__benchSeen;
      seen[type] = (seen[type] || 0) + 1;
      if (type === "progress") seen.last_progress = event.detail.value + "/" + event.detail.max;
      if (type === "b_preview") seen.last_preview = event.detail.type + ", " + event.detail.size + " bytes";
    });
  }
  return true;
})()"""

TAKE_COUNTS_JS = "(() => { const seen = window.__benchSeen; window.__benchSeen = {}; return seen; })()"

# What the page shows for the paced sampler (node 1) and the PreviewImage (node 2).
PAGE_STATE_JS = """(() => {
  const app = window.app, node = app.graph.getNodeById(1);
  const previews = (app.nodePreviewImages || {})["1"] || [];
  const outputs = (app.nodeOutputs || {})["2"];
  return {
    title: document.title,
    nodes: app.graph.nodes.map((n) => n.type).join(", "),
    preview_on_node_1: previews.length ? previews[0].slice(0, 40) : null,
    node_1_imgs: node && node.imgs ? node.imgs.length : 0,
    node_2_output: outputs && outputs.images ? outputs.images.map((i) => i.filename).join(", ") : null,
  };
})()"""


class Chromium:
    """Headless Chromium with ComfyUI's page open; its DevTools port from DevToolsActivePort."""

    def __init__(self, url):
        self.profile = tempfile.mkdtemp(prefix="comfytop-bench-chromium-")
        self.proc = subprocess.Popen(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
                "--window-size=1920,1080", url + "/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.tab = None
        self.version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()

    def connect(self):
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        for _ in range(600):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            if self.proc.poll() is not None:
                raise SystemExit(f"{CHROMIUM} ended at once (exit {self.proc.returncode})")
            time.sleep(0.1)
        else:
            raise SystemExit("Chromium wrote no DevToolsActivePort")
        port = int(open(port_file).read().split()[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/json/list")
        pages = [t for t in json.loads(conn.getresponse().read()) if t["type"] == "page"]
        conn.close()
        self.tab = DevTools(pages[0]["webSocketDebuggerUrl"])

    def client_id(self, timeout=180):
        """The frontend's clientId: api.ts stores the sid of the first `status` message in
        window.name, so it is set once the WebSocket is up. Also waits for the canvas."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = self.tab.evaluate("window.app && window.app.graph && window.comfyAPI ? window.name : ''")
            if ready:
                return ready
            time.sleep(0.5)
        raise SystemExit("the ComfyUI page did not connect its WebSocket in time")

    def cpu(self):
        return tree_cpu_seconds(self.proc.pid)

    def memory_kib(self):
        pids = process_tree(self.proc.pid)
        return sum(rss_kib(p) for p in pids), sum(pss_kib(p) for p in pids), len(pids)

    def stop(self):
        if self.tab:
            self.tab.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # Its helpers may outlive it for a moment and still write to the profile.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for _ in range(50):
            if not any(self.in_group(pid) for pid in os.listdir("/proc") if pid.isdigit()):
                break
            time.sleep(0.1)
        shutil.rmtree(self.profile, ignore_errors=True)

    def in_group(self, pid):
        try:
            fields = stat_fields(pid)
        except OSError:
            return False
        return int(fields[2]) == self.proc.pid and fields[0] != "Z"


# The measurement ---------------------------------------------------------------------------


class Peaks(threading.Thread):
    """Samples memory once a second: the largest RSS and PSS seen per client."""

    def __init__(self, probes):
        super().__init__(daemon=True)
        self.probes = probes  # name -> () -> (rss KiB, pss KiB)
        self.rss = dict.fromkeys(probes, 0)
        self.pss = dict.fromkeys(probes, 0)
        self.running = True

    def stop(self):
        if self.running:
            self.running = False
            self.join()

    def run(self):
        while self.running:
            for name, probe in self.probes.items():
                rss, pss = probe()
                self.rss[name] = max(self.rss[name], rss)
                self.pss[name] = max(self.pss[name], pss)
            time.sleep(1)


def main():
    stats = call("GET", "/system_stats")["system"]
    if "ComfytopPacedSampler" not in call("GET", "/object_info/ComfytopPacedSampler"):
        raise SystemExit(
            "the server lacks ComfytopPacedSampler: copy benches/comfyui_paced_sampler.py into "
            "ComfyUI's custom_nodes/ and restart it"
        )
    try:
        bridge = call("GET", "/comfytop/bridge")
        bridge_text = f"installed ({'enabled' if bridge.get('enabled') else 'disabled'})"
    except SystemExit:
        bridge_text = "not installed"

    started = []  # stopped in reverse, whatever happens
    try:
        measured = measure_all(started, bridge_text, stats)
    finally:
        for stop in reversed(started):
            stop()
    report(*measured, bridge_text)


def measure_all(started, bridge_text, stats):
    comfytop_version = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.strip()
    tab = Chromium(URL)
    started.append(tab.stop)
    tab.connect()
    tab_id = tab.client_id()
    # The workflow in the canvas, as if the user had built it there: previews land on node 1.
    tab.tab.evaluate(f"window.app.loadApiJson({json.dumps(workflow(STEPS, 0))}, 'paced'), true")
    tab.tab.evaluate(COUNT_EVENTS_JS)
    dash = whole_process.Dashboard([URL], "--client-id", COMFYTOP_ID, screen=True)
    started.append(dash.stop)
    floors = {"floor": (sys.executable, "floor_client.py", FLOOR_ID)}
    if whole_process.example_client_at_hand():
        floors["example"] = (whole_process.EXAMPLE_PYTHON, "example_client.py", EXAMPLE_ID)
    procs = {}
    for name, (python, script, client_id) in floors.items():
        proc = subprocess.Popen([python, os.path.join(HERE, script), URL, client_id], stdout=subprocess.DEVNULL)
        procs[name] = proc
        started.append(lambda proc=proc: (proc.kill(), proc.wait()))
    pss_of = lambda pid: (rss_kib(pid), pss_kib(pid))  # noqa: E731
    peaks = Peaks(
        {
            "tab": lambda: tab.memory_kib()[:2],
            "comfytop": lambda: pss_of(dash.proc.pid),
            **{name: lambda proc=proc: pss_of(proc.pid) for name, proc in procs.items()},
        }
    )
    peaks.start()
    started.append(peaks.stop)

    print(f"ComfyUI {stats['comfyui_version']} at {URL}, python {stats['python_version'].split()[0]}, comfytop bridge {bridge_text}")
    print(f"{comfytop_version}; {tab.version}; {os.cpu_count()} cores, {os.uname().release}")
    print(
        f"client ids: tab {tab_id}, comfytop {COMFYTOP_ID}, "
        + ", ".join(f"{name} {client_id}" for name, (_, _, client_id) in floors.items()),
        flush=True,
    )

    # A short prompt nobody watches: the server's first run, off the clock.
    run_prompt(workflow(10, int(time.time())), "comfytop-bench-warmup")
    time.sleep(10)
    tab.tab.evaluate(TAKE_COUNTS_JS)

    def sample():
        cpu, frames, written = dash.sample()
        return {"tab": tab.cpu(), "comfytop": cpu, "frames": frames, "bytes": written,
                **{name: whole_process.cpu_seconds(proc.pid) for name, proc in procs.items()}}

    windows = []  # (name, owner, seconds, {client: CPU-s}, frames, bytes, tab events)

    def measure(name, owner, action):
        s0 = sample()
        t0 = time.monotonic()
        action()
        seconds = time.monotonic() - t0
        s1 = sample()
        cpu = {c: s1[c] - s0[c] for c in ("tab", "comfytop", *procs)}
        seen = tab.tab.evaluate(TAKE_COUNTS_JS) or {}
        windows.append((name, owner, seconds, cpu, s1["frames"] - s0["frames"], s1["bytes"] - s0["bytes"], seen))
        print(
            f"{name:<24} {seconds:6.1f} s  CPU-s: tab {cpu['tab']:6.2f}  comfytop {cpu['comfytop']:5.2f}  "
            + "".join(f"{c} {cpu[c]:5.2f}  " for c in procs)
            + f"comfytop {s1['frames'] - s0['frames']} frames "
            f"{(s1['bytes'] - s0['bytes']) / 1024:.0f} KiB",
            flush=True,
        )
        print(f"  the tab's API saw: {json.dumps(seen, sort_keys=True)}", flush=True)

    tab_pids = set(process_tree(tab.proc.pid))
    measure(f"idle {IDLE_SECS:.0f} s", None, lambda: time.sleep(IDLE_SECS))

    midway = {}
    seed = int(time.time())
    for owner, client_id, look in (
        ("tab", tab_id, lambda: midway.update(tab=tab.tab.evaluate("document.title"))),
        ("comfytop", COMFYTOP_ID, lambda: midway.update(comfytop=dash.screen_text())),
        *((name, client_id, None) for name, (_, _, client_id) in floors.items()),
    ):
        time.sleep(3)
        seed += 1
        measure(f"{STEPS}-step run, {owner}'s", owner, lambda: run_prompt(workflow(STEPS, seed), client_id, look))
    if set(process_tree(tab.proc.pid)) != tab_pids:
        print("  note: Chromium's process tree changed during the measurement")

    page = tab.tab.evaluate(PAGE_STATE_JS)
    with open(dash.log, errors="replace") as f:
        log = f.read()
    peaks.stop()
    peak_rss = {"tab": peaks.rss["tab"] / 1024, "comfytop": dash.peak_mib(),
                **{name: whole_process.status_kib(proc.pid, "VmHWM") / 1024 for name, proc in procs.items()}}
    alive = dash.proc.poll() is None
    return windows, midway, page, log, alive, peak_rss, peaks.pss, tab.memory_kib()[2]


def report(windows, midway, page, log, alive, peak_rss, peak_pss, tab_processes, bridge_text):
    print()
    print(f"the tab halfway through its own run: title {midway.get('tab')!r}")
    print(f"the tab after the runs: {json.dumps(page)}")
    screen = midway.get("comfytop", "").split("\n")
    blocks = sum(line.count("▀") + line.count("▄") for line in screen)
    shown = [line.replace("│", " ").strip() for line in screen if f"/{STEPS}" in line or "JPEG" in line]
    protocol = re.search(r'previews protocol="?(\w+)', log)
    print(
        f"comfytop halfway through its own run: {blocks} half-block cells on screen "
        f"(previews as {protocol.group(1) if protocol else '?'}); "
        + (" | ".join(" ".join(line.split()) for line in shown) or "no step count on screen")
    )
    print(f"comfytop still running at the end: {'yes' if alive else 'NO'}")

    idle = windows[0]
    runs = {w[1]: w for w in windows[1:]}
    print()
    print(
        f"| client | idle {IDLE_SECS:.0f} s, CPU-s | own {STEPS}-step run, CPU-s (s) | "
        f"others' runs, CPU-s | peak RSS | peak PSS | frames / bytes to terminal |"
    )
    print("|---|---|---|---|---|---|---|")
    names = {"tab": f"ComfyUI frontend, headless Chromium ({tab_processes} processes)",
             "comfytop": "comfytop dashboard, 120x40", "floor": "bare Python client (floor)",
             "example": "ComfyUI example's client, websocket-client (second floor)"}
    for client in runs:
        own = runs[client]
        others = ", ".join(f"{runs[o][3][client]:.2f} ({o}'s)" for o in runs if o != client)
        if client == "comfytop":
            drawn = (
                f"idle {idle[4]} / {idle[5] / 1024:.0f} KiB; own run {own[4]} / {own[5] / 1024:.0f} KiB; "
                + "; ".join(f"{o}'s run {runs[o][4]} / {runs[o][5] / 1024:.0f} KiB" for o in runs if o != client)
            )
        else:
            drawn = ""
        rss = f"{peak_rss[client]:.1f} MiB" + (" (sum over the tree)" if client == "tab" else "")
        print(
            f"| {names[client]} | {idle[3][client]:.2f} | {own[3][client]:.2f} ({own[2]:.1f} s) | {others} | "
            f"{rss} | {peak_pss[client] / 1024:.1f} MiB | {drawn} |"
        )
    print()
    print(
        "Own run: the run queued under that client's id, the only one ComfyUI sends its progress and "
        "previews to. Others' runs: the same client during the other runs, when it gets status "
        "broadcasts only"
        + (", except comfytop, which watches every prompt through the comfytop bridge installed on this server."
           if bridge_text.startswith("installed") else ".")
    )
    print(
        "Chromium's peak RSS is the largest sum over its processes (pages they share counted in each); "
        "PSS splits shared pages among the processes sharing them. Memory sampled once a second; "
        f"this script used {sum(os.times()[:2]):.1f} CPU-s."
    )


if __name__ == "__main__":
    main()
