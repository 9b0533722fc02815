#!/usr/bin/env python3
"""What the comfytop dashboard costs as a whole process, against the simulated ComfyUI, in a
120x40 pseudo-terminal: CPU seconds, peak RSS, frames drawn and bytes written to the terminal.

    cargo build --release && python3 benches/whole_process.py

Scenarios (each on a fresh simulator):
  idle          60 s idle on a fresh server, then a prompt the dashboard queued itself, then
                the 60 s right after it finished
  run           a 200-step run with 512 px images and 256 px previews at 20 previews per second,
                queued by the dashboard itself (its client id): with half-block previews, then
                with kitty graphics; and the same run followed by a bare Python client that
                only parses the frames (benches/floor_client.py), as a floor, and, when
                websocket-client is at hand, by the client of ComfyUI's own websocket example
                doing the same (benches/example_client.py), as a second floor
  big           10,000 history entries and a 2,000-item queue (from another client)
  fleet         8 and 32 idle servers
  soak          a compressed soak, only when asked for (it takes minutes): 50,000 cheap prompts
                from another client at a 1 ms step, 1 in 10 failing at once, the server's queue
                kept topped up; the dashboard's RSS at start, middle and end, then its screen read
                back (queue 0, the last prompt in History)

Environment: BIN (default target/release/comfytop), IDLE_SECS (60), STEPS (200), SOAK_PROMPTS
(50000), SCENARIOS (default "idle run big fleet"; the soak runs with SCENARIOS=soak),
EXAMPLE_PYTHON (a Python with websocket-client for the second floor; default this one). Needs
python3 only (no tmux): the terminal is a pty this script owns, so every byte the dashboard
writes is counted. Frames are counted in what it writes: each frame hides the cursor or shows it
(`ESC [ ?25l` or `ESC [ ?25h`), so the dashboard runs at its default log level, as a user's
does. CPU comes from /proc/PID/stat, peak RSS from VmHWM.
"""

import codecs
import fcntl
import http.client
import json
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("BIN", os.path.join(HERE, "..", "target", "release", "comfytop"))
IDLE_SECS = float(os.environ.get("IDLE_SECS", "60"))
STEPS = int(os.environ.get("STEPS", "200"))
SOAK_PROMPTS = int(os.environ.get("SOAK_PROMPTS", "50000"))
SCENARIOS = os.environ.get("SCENARIOS", "idle run big fleet").split()
EXAMPLE_PYTHON = os.environ.get("EXAMPLE_PYTHON", sys.executable)
WORKFLOWS = os.path.join(HERE, "..", "tests", "fixtures", "comfyui-0.3.64", "workflows")
TICKS = os.sysconf("SC_CLK_TCK")
COLS, ROWS = 120, 40


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Simulator:
    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [BIN, "sim", "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        servers = int(args[args.index("--servers") + 1]) if "--servers" in args else 1
        self.urls = []
        while len(self.urls) < servers:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("the simulator ended before saying where it listens")
            self.urls += re.findall(r"http://127\.0\.0\.1:\d+", line)
        self.url = self.urls[0]

    def call(self, method, path, body=None):
        host, port = self.url[len("http://") :].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        data = json.dumps(body) if body is not None else None
        conn.request(method, path, data, {"Content-Type": "application/json"})
        reply = conn.getresponse().read()
        conn.close()
        return json.loads(reply) if reply else None

    def queue_prompt(self, prompt, client_id):
        return self.call("POST", "/prompt", {"prompt": prompt, "client_id": client_id})["prompt_id"]

    def wait_done(self, prompt_id):
        while not self.call("GET", f"/history/{prompt_id}"):
            time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Screen:
    """Just enough of a terminal to read back what the dashboard drew: cursor moves, text and
    clears; colours and everything else are skipped."""

    TOKEN = re.compile(
        r"\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\].*?(?:\x07|\x1b\\)|\x1b_.*?\x1b\\"
        r"|\x1b[^\[\]_]|[^\x1b\r\n]+|\r|\n",
        re.S,
    )

    def __init__(self):
        self.cells = [[" "] * COLS for _ in range(ROWS)]
        self.row = self.col = 0
        self.decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        self.pending = ""

    def feed(self, data):
        text = self.pending + self.decode(data)
        pos = 0
        while pos < len(text):
            m = self.TOKEN.match(text, pos)
            if not m:
                if len(text) - pos < 4096:
                    break  # an escape sequence cut at the end of the chunk: the rest comes next
                pos += 1
                continue
            token, pos = m.group(), m.end()
            if m.group(2) in ("H", "f"):
                row, _, col = m.group(1).partition(";")
                self.row = min(max(int(row or 1), 1), ROWS) - 1
                self.col = min(max(int(col or 1), 1), COLS) - 1
            elif m.group(2) == "J" and m.group(1) in ("2", "3"):
                self.cells = [[" "] * COLS for _ in range(ROWS)]
            elif m.group(2) == "K":
                self.cells[self.row][self.col :] = [" "] * (COLS - self.col)
            elif token == "\r":
                self.col = 0
            elif token == "\n":
                self.row = min(self.row + 1, ROWS - 1)
            elif token[0] != "\x1b" and self.col < COLS:
                shown = token[: COLS - self.col]
                self.cells[self.row][self.col : self.col + len(shown)] = shown
                self.col += len(token)
        self.pending = text[pos:]

    def text(self):
        return "\n".join("".join(row) for row in self.cells)


class FrameCounter:
    """Frames in a terminal's input: ratatui hides the cursor in every frame, or shows it when a
    frame places it. Counts one more when the terminal is set up and one when it is given back;
    the deltas taken between samples leave those out."""

    MARKS = (b"\x1b[?25l", b"\x1b[?25h")

    def __init__(self):
        self.count = 0
        self.tail = b""

    def feed(self, chunk):
        # A mark can be split between two reads, so the last read's end is read again; it is
        # too short to hold a whole mark, so none is counted twice.
        data = self.tail + chunk
        self.count += sum(data.count(mark) for mark in self.MARKS)
        self.tail = data[-(len(self.MARKS[0]) - 1):]


class Dashboard:
    """The dashboard in a pty of COLS x ROWS; counts the bytes it writes, answers nothing. With
    screen=True it also keeps what is on the screen (see Screen), at some CPU cost to this
    script."""

    def __init__(self, urls, *args, screen=False):
        fd, log = tempfile.mkstemp(prefix="comfytop-bench-", suffix=".log")
        os.close(fd)
        self.log = log
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = dict(os.environ, TERM="xterm-256color")
        env.pop("TMUX", None)
        env.pop("COMFYTOP_LOG", None)
        self.proc = subprocess.Popen(
            [BIN, *urls, "--log", log, "--notify", "off", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.bytes = 0
        self.frames = FrameCounter()
        self.screen = Screen() if screen else None
        self.lock = threading.Lock()
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 1.0)
                if ready:
                    chunk = os.read(self.master, 65536)
                    if not chunk:
                        return
                    with self.lock:
                        self.bytes += len(chunk)
                        self.frames.feed(chunk)
                        if self.screen:
                            self.screen.feed(chunk)
            except OSError:
                return

    def sample(self):
        """CPU seconds, frames drawn and bytes written so far."""
        with self.lock:
            written, frames = self.bytes, self.frames.count
        return cpu_seconds(self.proc.pid), frames, written

    def client_id(self):
        for _ in range(100):
            with open(self.log, errors="replace") as f:
                found = re.search(r"client_id=([\w-]+)", f.read())
            if found:
                return found.group(1)
            time.sleep(0.1)
        raise SystemExit("the dashboard did not log its client id")

    def peak_mib(self):
        return status_kib(self.proc.pid, "VmHWM") / 1024

    def rss_mib(self):
        return status_kib(self.proc.pid, "VmRSS") / 1024

    def screen_text(self):
        with self.lock:
            return self.screen.text()

    def stop(self):
        os.write(self.master, b"q")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.master)
        os.remove(self.log)


def workflow(steps, delay, size=512, preview=256, seed=4242):
    with open(os.path.join(WORKFLOWS, "slow_steps_full.json")) as f:
        prompt = json.load(f)
    for node in prompt.values():
        if node["class_type"] == "LabSlowSteps":
            node["inputs"].update(
                steps=steps, delay=delay, width=size, height=size, preview_size=preview, seed=seed
            )
    return prompt


ROWS_OUT = []


def report(what, cpu, frames, written, seconds, peak):
    ROWS_OUT.append((what, cpu, frames, written, seconds, peak))
    print(
        f"{what:<44} {cpu:6.2f} CPU-s {frames:6d} frames {written / 1024:9.1f} KiB "
        f"{written / 1024 / max(seconds, 1e-9):7.1f} KiB/s {seconds:6.1f} s  peak {peak:5.1f} MiB",
        flush=True,
    )


def measure(dash, what, action):
    c0, f0, b0 = dash.sample()
    t0 = time.monotonic()
    action()
    seconds = time.monotonic() - t0
    c1, f1, b1 = dash.sample()
    report(what, c1 - c0, f1 - f0, b1 - b0, seconds, dash.peak_mib())


def idle():
    sim = Simulator("--step-ms", "100")
    dash = Dashboard([sim.url], "--image-protocol", "halfblocks")
    time.sleep(5)
    measure(dash, f"idle {IDLE_SECS:.0f} s, fresh server", lambda: time.sleep(IDLE_SECS))
    prompt_id = sim.queue_prompt(workflow(20, 0.05), dash.client_id())
    sim.wait_done(prompt_id)
    time.sleep(1)
    measure(dash, f"idle {IDLE_SECS:.0f} s right after a prompt", lambda: time.sleep(IDLE_SECS))
    dash.stop()
    sim.stop()


def one_run(protocol):
    # At the nominal 100 ms step a Lab delay of 0.05 s is 50 ms: 20 steps and previews a second.
    sim = Simulator("--step-ms", "100")
    dash = Dashboard([sim.url], "--image-protocol", protocol)
    time.sleep(5)
    client_id = dash.client_id()

    def run():
        prompt_id = sim.queue_prompt(workflow(STEPS, 0.05), client_id)
        sim.wait_done(prompt_id)
        time.sleep(1)

    measure(dash, f"{STEPS}-step run, 20 previews/s, {protocol}", run)
    dash.stop()
    sim.stop()


def example_client_at_hand():
    """Whether EXAMPLE_PYTHON can run benches/example_client.py (it needs websocket-client)."""
    found = subprocess.run([EXAMPLE_PYTHON, "-c", "import websocket"], capture_output=True).returncode == 0
    if not found:
        print(f"no websocket-client for {EXAMPLE_PYTHON}: the example client's floor is left out")
    return found


def floor(what="bare Python client (floor)", python=sys.executable, script="floor_client.py"):
    """The same run, followed by a Python client that only parses it."""
    sim = Simulator("--step-ms", "100")
    client = subprocess.Popen(
        [python, os.path.join(HERE, script), sim.url, "floor-client"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)
    c0 = cpu_seconds(client.pid)
    t0 = time.monotonic()
    prompt_id = sim.queue_prompt(workflow(STEPS, 0.05), "floor-client")
    sim.wait_done(prompt_id)
    time.sleep(1)
    seconds = time.monotonic() - t0
    c1 = cpu_seconds(client.pid)
    peak = status_kib(client.pid, "VmHWM") / 1024
    client.kill()
    report(f"{STEPS}-step run, {what}", c1 - c0, 0, 0, seconds, peak)
    sim.stop()


def big():
    sim = Simulator("--step-ms", "1")
    small = os.path.join(WORKFLOWS, "small_save.json")
    with open(small) as f:
        quick = json.load(f)
    for node in quick.values():
        if node["class_type"] == "LabSlowSteps":
            node["inputs"].update(steps=1, delay=0.0)
    for i in range(10_000):
        for node in quick.values():
            if node["class_type"] == "LabSlowSteps":
                node["inputs"]["seed"] = i
        sim.queue_prompt(quick, "a-script")
    while sim.call("GET", "/prompt")["exec_info"]["queue_remaining"]:
        time.sleep(0.5)
    # One long prompt runs; 2,000 wait behind it.
    sim.queue_prompt(workflow(10_000, 1.0, size=64, preview=32), "a-browser-tab")
    for i in range(2_000):
        for node in quick.values():
            if node["class_type"] == "LabSlowSteps":
                node["inputs"]["seed"] = 20_000 + i
        sim.queue_prompt(quick, "a-browser-tab")
    dash = Dashboard([sim.url], "--image-protocol", "halfblocks")
    measure(dash, "10,000 history + 2,000 queued, first 30 s", lambda: time.sleep(30))
    dash.stop()
    sim.stop()


def fleet(n):
    sim = Simulator("--servers", str(n), "--step-ms", "100")
    dash = Dashboard(sim.urls, "--image-protocol", "halfblocks")
    time.sleep(10)
    measure(dash, f"{n} idle servers, {IDLE_SECS:.0f} s", lambda: time.sleep(IDLE_SECS))
    dash.stop()
    sim.stop()


def soak():
    """SOAK_PROMPTS cheap prompts from another client (as a browser tab would queue them), never
    more than 200 waiting, so that the simulator sets the pace; 1 in 10 fails at once."""
    sim = Simulator("--step-ms", "1")
    dash = Dashboard([sim.url], "--image-protocol", "halfblocks", screen=True)
    time.sleep(5)
    with open(os.path.join(WORKFLOWS, "small_save.json")) as f:
        succeeds = json.load(f)
    succeeds["1"]["inputs"].update(steps=1, delay=0.0)

    def prompt(i):
        if i % 10 == 9:
            return {"1": {"class_type": "LabRaiseError", "inputs": {"message": f"soak {i}"}}}
        succeeds["1"]["inputs"]["seed"] = i
        return succeeds

    rss = [dash.rss_mib()]
    c0, f0, b0 = dash.sample()
    t0 = time.monotonic()
    queued = 0
    while True:
        waiting = sim.call("GET", "/prompt")["exec_info"]["queue_remaining"]
        if len(rss) == 1 and queued - waiting >= SOAK_PROMPTS // 2:
            rss.append(dash.rss_mib())
        if queued == SOAK_PROMPTS and not waiting:
            break
        for _ in range(min(200 - waiting, SOAK_PROMPTS - queued) if waiting < 100 else 0):
            last = sim.queue_prompt(prompt(queued), "a-browser-tab")
            queued += 1
        time.sleep(0.05)
    seconds = time.monotonic() - t0
    time.sleep(3)  # the dashboard's last frame
    rss.append(dash.rss_mib())
    c1, f1, b1 = dash.sample()
    report(
        f"soak: {SOAK_PROMPTS:,} prompts, {SOAK_PROMPTS / seconds:.0f}/s",
        c1 - c0, f1 - f0, b1 - b0, seconds, dash.peak_mib(),
    )
    sim_peak = status_kib(sim.proc.pid, "VmHWM") / 1024
    print(
        f"  dashboard RSS start {rss[0]:.1f}, middle {rss[1]:.1f}, end {rss[2]:.1f} MiB; "
        f"simulator {cpu_seconds(sim.proc.pid):.1f} CPU-s, peak {sim_peak:.1f} MiB; "
        f"this script {sum(os.times()[:2]):.1f} CPU-s"
    )
    screen = dash.screen_text()
    lines = screen.split("\n")
    newest = next((lines[i + 1] for i, line in enumerate(lines) if "│outcome" in line), "")
    checks = {
        "dashboard alive": dash.proc.poll() is None,
        "status bar reads queue 0": "│ queue 0 │" in lines[0],
        f"last prompt {last[:8]} at the top of History": last[:8] in newest,
    }
    print("  " + ", ".join(f"{what}: {'yes' if ok else 'NO'}" for what, ok in checks.items()))
    if not all(checks.values()):
        print(screen)
    dash.stop()
    sim.stop()


def main():
    print(f"comfytop: {subprocess.run([BIN, '--version'], capture_output=True, text=True).stdout.strip()}")
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}")
    if "idle" in SCENARIOS:
        idle()
    if "run" in SCENARIOS:
        one_run("halfblocks")
        one_run("kitty")
        floor()
        if example_client_at_hand():
            floor("ComfyUI example's client (second floor)", EXAMPLE_PYTHON, "example_client.py")
    if "big" in SCENARIOS:
        big()
    if "fleet" in SCENARIOS:
        fleet(8)
        fleet(32)
    if "soak" in SCENARIOS:
        soak()
    print()
    print("| scenario | CPU-s | frames | bytes to terminal | KiB/s | seconds | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for what, cpu, frames, written, seconds, peak in ROWS_OUT:
        print(
            f"| {what} | {cpu:.2f} | {frames} | {written / 1024:.1f} KiB | "
            f"{written / 1024 / max(seconds, 1e-9):.1f} | {seconds:.1f} | {peak:.1f} MiB |"
        )


if __name__ == "__main__":
    main()
