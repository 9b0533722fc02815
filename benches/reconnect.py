#!/usr/bin/env python3
"""How long `comfytop watch` stays blind after the server is back, for two outages.

  cargo build --release && benches/reconnect.py

1. kill: the simulated server is killed, restarted after FIRST_OUTAGE s, and killed again 18 s
   after comfytop reconnected, down OUTAGE s.
2. refusal: comfytop starts while the server is down (for STARTUP_DOWN s), runs healthy for 5 s,
   then the server is killed and restarted at once (refused for about 0.3 s).

"Back" is when the restarted server first accepts a TCP connection; "reconnected" is when
`watch` prints its `connected to` line. Environment: BIN (default target/release/comfytop),
FIRST_OUTAGE (default 10), OUTAGE (default 5), STARTUP_DOWN (default 5).
"""

import os
import re
import socket
import subprocess
import sys
import threading
import time

BIN = os.environ.get("BIN", "target/release/comfytop")
FIRST_OUTAGE = float(os.environ.get("FIRST_OUTAGE", "10"))
OUTAGE = float(os.environ.get("OUTAGE", "5"))
STARTUP_DOWN = float(os.environ.get("STARTUP_DOWN", "5"))
CONNECTED = re.compile(r"^\s*--\s+connected to ")
PATIENCE = 120.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Sim:
    def __init__(self, port):
        self.port = port
        self.proc = None

    def start(self):
        """Starts the server; returns the moment it accepts connections."""
        self.proc = subprocess.Popen(
            [BIN, "sim", "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + PATIENCE
        while not accepts(self.port):
            if time.monotonic() > deadline:
                sys.exit("the simulator never listened")
            time.sleep(0.01)
        return time.monotonic()

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        return time.monotonic()


class Watch:
    """`comfytop watch URL`, each stdout line stamped on arrival."""

    def __init__(self, port):
        self.proc = subprocess.Popen(
            [BIN, "watch", f"http://127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.cond.notify_all()

    def connected_after(self, since):
        """The moment of the first `connected to` line printed after `since`."""
        deadline = time.monotonic() + PATIENCE
        with self.cond:
            while True:
                for at, line in self.lines:
                    if at >= since and CONNECTED.match(line):
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    sys.exit("comfytop never reconnected")
                self.cond.wait(left)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def kill_soon_after_a_reconnect():
    port = free_port()
    sim = Sim(port)
    sim.start()
    watch = Watch(port)
    try:
        watch.connected_after(0)
        sim.kill()
        time.sleep(FIRST_OUTAGE)
        back = sim.start()
        reconnected = watch.connected_after(back)
        time.sleep(max(0.0, reconnected + 18 - time.monotonic()))
        killed = sim.kill()
        time.sleep(OUTAGE)
        back = sim.start()
        blind = watch.connected_after(back) - back
        print(f"kill 18 s after a reconnect, down {back - killed:.1f} s: "
              f"reconnected {blind:.2f} s after the server was back")
    finally:
        watch.stop()
        sim.kill()


def short_refusal_after_a_healthy_run():
    port = free_port()
    sim = Sim(port)
    watch = Watch(port)
    try:
        time.sleep(STARTUP_DOWN)
        watch.connected_after(sim.start())
        time.sleep(5)
        killed = sim.kill()
        time.sleep(0.3)
        back = sim.start()
        blind = watch.connected_after(back) - back
        print(f"refused for {back - killed:.2f} s after a healthy run: "
              f"reconnected {blind:.2f} s after the server was back")
    finally:
        watch.stop()
        sim.kill()


if __name__ == "__main__":
    print(f"{BIN}")
    kill_soon_after_a_reconnect()
    short_refusal_after_a_healthy_run()
