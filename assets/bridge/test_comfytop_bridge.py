"""Tests of the comfytop bridge custom node, against stand-ins for ComfyUI and aiohttp.

Standard library only: run `python3 assets/bridge/test_comfytop_bridge.py` from anywhere.
"""

import asyncio
import importlib.util
import json
import logging
import os
import struct
import sys
import time
import types
import unittest

sys.dont_write_bytecode = True  # leave no __pycache__ next to the bridge
BRIDGE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "comfytop_bridge.py")


# --- a minimal aiohttp.web -------------------------------------------------------------------


class RouteTableDef:
    def __init__(self):
        self.handlers = {}

    def route(self, method, path):
        def decorate(handler):
            self.handlers[(method, path)] = handler
            return handler

        return decorate

    def get(self, path, **kwargs):
        return self.route("GET", path)

    def post(self, path, **kwargs):
        return self.route("POST", path)


class Response:
    def __init__(self, body, status):
        self.body = body
        self.status = status


def json_response(data, status=200):
    json.dumps(data)  # like the real one, only JSON goes out
    return Response(data, status)


fake_web = types.ModuleType("aiohttp.web")
fake_web.RouteTableDef = RouteTableDef
fake_web.json_response = json_response
fake_aiohttp = types.ModuleType("aiohttp")
fake_aiohttp.web = fake_web


class Request:
    def __init__(self, text):
        self.text = text

    async def json(self):
        return json.loads(self.text)


# --- ComfyUI's PromptServer and its sockets --------------------------------------------------


class FakeWS:
    """Records what it was sent, in order: dicts (send_json), str and bytes."""

    def __init__(self):
        self.received = []
        self.closed = None

    async def send_json(self, message):
        self.received.append(message)

    async def send_str(self, text):
        self.received.append(text)

    async def send_bytes(self, data):
        self.received.append(data)

    async def close(self, code=1000, message=b""):
        self.closed = (code, message)


class SlowWS(FakeWS):
    """A client that stopped reading: no send ever completes."""

    def __init__(self):
        super().__init__()
        self.attempts = 0

    async def stuck(self):
        self.attempts += 1
        await asyncio.get_running_loop().create_future()

    async def send_json(self, message):
        await self.stuck()

    async def send_str(self, text):
        await self.stuck()

    async def send_bytes(self, data):
        await self.stuck()


class GatedWS(FakeWS):
    """A client that reads slowly: each copy's send waits until the test lets it complete."""

    def __init__(self):
        super().__init__()
        self.gates = []

    async def gate(self, item):
        gate = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        await gate
        self.received.append(item)

    async def send_str(self, text):
        await self.gate(text)

    async def send_bytes(self, data):
        await self.gate(data)

    def pending(self):
        return [gate for gate in self.gates if not gate.done()]

    def complete(self):
        [gate] = self.pending()
        gate.set_result(None)


class BrokenWS(FakeWS):
    async def send_str(self, text):
        raise ConnectionResetError("gone")

    async def send_bytes(self, data):
        raise ConnectionResetError("gone")


class FakePromptServer:
    """ComfyUI's send_json/send_bytes: to sockets[sid], or to every socket when sid is None."""

    def __init__(self):
        self.routes = RouteTableDef()
        self.sockets = {}
        self.calls = []  # (method, event, data, sid) exactly as called

    def encode_bytes(self, event, data):
        message = bytearray(struct.pack(">I", event))
        message.extend(data)
        return message

    async def send_bytes(self, event, data, sid=None):
        self.calls.append(("send_bytes", event, data, sid))
        message = self.encode_bytes(event, data)
        await self.deliver("send_bytes", message, sid)
        return ("sent", event)

    async def send_json(self, event, data, sid=None):
        self.calls.append(("send_json", event, data, sid))
        await self.deliver("send_json", {"type": event, "data": data}, sid)
        return ("sent", event)

    async def deliver(self, method, message, sid):
        if sid is None:
            for ws in list(self.sockets.values()):
                await getattr(ws, method)(message)
        elif sid in self.sockets:
            await getattr(self.sockets[sid], method)(message)


class FakeClock:
    """The bridge's clock, moved on by the test; counts how often it is read."""

    def __init__(self):
        self.now = 5000.0
        self.reads = 0

    def __call__(self):
        self.reads += 1
        return self.now


# --- loading the bridge ----------------------------------------------------------------------

_MISSING = object()
_loads = 0


def load_bridge(server_module):
    """Executes the bridge file as ComfyUI does, with `server_module` as `server` (None: absent)."""
    global _loads
    _loads += 1
    names = ("server", "aiohttp", "aiohttp.web")
    saved = {name: sys.modules.get(name, _MISSING) for name in names}
    sys.modules.update({"server": server_module, "aiohttp": fake_aiohttp, "aiohttp.web": fake_web})
    try:
        spec = importlib.util.spec_from_file_location("comfytop_bridge_%d" % _loads, BRIDGE_PATH)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for name, value in saved.items():
            if value is _MISSING:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value


def server_module(instance):
    module = types.ModuleType("server")
    module.PromptServer = type("PromptServer", (), {"instance": instance})
    return module


class Logs(logging.Handler):
    """Captures the bridge's log records (instead of printing them)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []
        self.logger = logging.getLogger("comfytop_bridge")

    def __enter__(self):
        self.saved = (self.logger.propagate, self.logger.level)
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.propagate, self.logger.level = self.saved

    def emit(self, record):
        self.records.append(record)

    def at(self, level):
        return [r.getMessage() for r in self.records if r.levelno == level]


with Logs():
    M = load_bridge(server_module(FakePromptServer()))


def run_now(coro):
    """Runs a coroutine that must finish without ever waiting; returns its result."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the call waited on something")


async def settle():
    """Lets every ready task (the watchers' senders) run until they wait again."""
    for _ in range(20):
        await asyncio.sleep(0)


def parse_copy(item):
    """A relayed copy back to (owner, event, data), checking its envelope."""
    if isinstance(item, str):
        message = json.loads(item)
        assert message["type"] == "comfytop_bridge", message
        assert sorted(message["data"]) == ["data", "owner", "type"], message
        inner = message["data"]
        return (inner["owner"], inner["type"], inner["data"])
    assert isinstance(item, bytes), type(item)
    magic, length = struct.unpack_from(">II", item)
    assert magic == 0x434D5442 and item[:4] == b"CMTB", item[:4]
    owner = item[8 : 8 + length].decode("utf-8")
    (event,) = struct.unpack_from(">I", item, 8 + length)
    return (owner, event, item[12 + length :])


class BridgeTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.logs = Logs().__enter__()
        self.addCleanup(self.logs.__exit__)
        self.ps = FakePromptServer()
        self.send_json = self.ps.send_json
        self.send_bytes = self.ps.send_bytes
        self.bridge = M.install(self.ps, fake_web)
        self.clock = self.bridge.clock = FakeClock()  # no test depends on how fast it runs
        self.logs.records.clear()

    def connect(self, sid, ws=None):
        ws = FakeWS() if ws is None else ws
        self.ps.sockets[sid] = ws
        return ws

    async def request(self, method, path, body=None):
        handler = self.ps.routes.handlers[(method, path)]
        text = body if isinstance(body, str) or body is None else json.dumps(body)
        return await handler(Request(text))

    async def info(self):
        response = await self.request("GET", "/comfytop/bridge")
        self.assertEqual(response.status, 200)
        return response.body

    async def watch(self, sid, enabled=True):
        body = {"clientId": sid, "enabled": enabled}
        return await self.request("POST", "/comfytop/bridge/watch", body)

    async def watcher(self, sid, ws=None):
        ws = self.connect(sid, ws)
        response = await self.watch(sid)
        self.assertEqual(
            (response.status, response.body), (200, {"watching": True, "version": "1.0.0"})
        )
        return ws

    def count_encoders(self):
        counts = {"text": 0, "binary": 0}
        for kind in counts:
            name = "encode_" + kind
            original = getattr(M, name)

            def counting(*args, _kind=kind, _original=original):
                counts[_kind] += 1
                return _original(*args)

            setattr(M, name, counting)
            self.addCleanup(setattr, M, name, original)
        return counts

    def copies(self, ws):
        return [parse_copy(item) for item in ws.received]


class Forwarding(BridgeTest):
    async def test_only_watchers_get_copies_of_other_clients_prompts(self):
        owner = self.connect("owner")
        bystander = self.connect("bystander")
        watcher = await self.watcher("watcher")
        await self.ps.send_json("executing", {"node": "3", "prompt_id": "p1"}, "owner")
        await self.ps.send_json("progress", {"value": 1, "max": 2}, "bystander")
        await self.ps.send_bytes(1, b"\x00\x00\x00\x01jpeg", "owner")
        await settle()
        self.assertEqual(bystander.received, [{"type": "progress", "data": {"value": 1, "max": 2}}])
        self.assertEqual(
            owner.received,
            [
                {"type": "executing", "data": {"node": "3", "prompt_id": "p1"}},
                bytearray(b"\x00\x00\x00\x01\x00\x00\x00\x01jpeg"),
            ],
        )
        self.assertEqual(
            self.copies(watcher),
            [
                ("owner", "executing", {"node": "3", "prompt_id": "p1"}),
                ("bystander", "progress", {"value": 1, "max": 2}),
                ("owner", 1, b"\x00\x00\x00\x01jpeg"),
            ],
        )

    async def test_broadcasts_are_not_copied(self):
        others = [self.connect("a"), self.connect("b")]
        watcher = await self.watcher("watcher")
        counts = self.count_encoders()
        await self.ps.send_json("status", {"status": {"exec_info": {"queue_remaining": 0}}})
        await self.ps.send_json("executing", {"node": None, "prompt_id": "p1"}, None)
        await self.ps.send_bytes(3, b"\x00\x00\x00\x013hello", None)
        await settle()
        expected = [
            {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}},
            {"type": "executing", "data": {"node": None, "prompt_id": "p1"}},
            bytearray(b"\x00\x00\x00\x03\x00\x00\x00\x013hello"),
        ]
        for ws in others + [watcher]:
            self.assertEqual(ws.received, expected)
        self.assertEqual(counts, {"text": 0, "binary": 0})

    async def test_only_execution_events_and_frames_are_copied(self):
        self.connect("owner")
        watcher = await self.watcher("watcher")
        counts = self.count_encoders()
        for event in (
            "status",
            "logs",
            "feature_flags",
            "my_custom_node.update",
            "crystools.monitor",
        ):
            await self.ps.send_json(event, {"x": 1}, "owner")
        for event in (2, 5, 99):
            await self.ps.send_bytes(event, b"payload", "owner")
        await settle()
        self.assertEqual(watcher.received, [])
        self.assertEqual(counts, {"text": 0, "binary": 0})

        forwarded = [
            "execution_start",
            "execution_cached",
            "executing",
            "progress",
            "progress_state",
            "executed",
            "execution_success",
            "execution_error",
            "execution_interrupted",
        ]
        for n, event in enumerate(forwarded):
            await self.ps.send_json(event, {"n": n}, "owner")
        await settle()  # a watcher behind by 8 or more would get no previews
        for event in (1, 3, 4):
            await self.ps.send_bytes(event, b"frame %d" % event, "owner")
        await settle()
        expected = [("owner", e, {"n": n}) for n, e in enumerate(forwarded)]
        expected += [("owner", e, b"frame %d" % e) for e in (1, 3, 4)]
        self.assertEqual(self.copies(watcher), expected)

    async def test_a_watcher_gets_no_copy_of_its_own_prompts(self):
        me = await self.watcher("me")
        counts = self.count_encoders()
        await self.ps.send_json("progress", {"value": 1}, "me")
        await self.ps.send_bytes(1, b"img", "me")
        await settle()
        self.assertEqual(
            me.received,
            [{"type": "progress", "data": {"value": 1}}, bytearray(b"\x00\x00\x00\x01img")],
        )
        self.assertEqual(counts, {"text": 0, "binary": 0})

        other = await self.watcher("other")
        await self.ps.send_json("progress", {"value": 2}, "me")
        await settle()
        self.assertEqual(me.received[2:], [{"type": "progress", "data": {"value": 2}}])
        self.assertEqual(self.copies(other), [("me", "progress", {"value": 2})])

    async def test_owner_gets_its_events_unchanged_once_and_in_order(self):
        owner = self.connect("owner")
        watchers = [await self.watcher("w1"), await self.watcher("w2")]
        sent = [
            ("send_json", "execution_start", {"prompt_id": "p"}),
            ("send_bytes", 3, b"\x00\x00\x00\x014text"),
            ("send_json", "progress", {"value": 1, "max": 3}),
            ("send_bytes", 4, bytearray(b"\x00\x00\x00\x02{}img")),
            ("send_json", "status", {"status": {}}),
            ("send_bytes", 1, memoryview(b"\x00\x00\x00\x01jpg")),
            ("send_json", "executed", {"node": "9", "output": {"images": []}}),
        ]
        for method, event, data in sent:
            result = await getattr(self.ps, method)(event, data, "owner")
            self.assertEqual(result, ("sent", event))
        await settle()
        self.assertEqual(self.ps.calls, [(m, e, d, "owner") for m, e, d in sent])
        for call, (method, event, data) in zip(self.ps.calls, sent):
            self.assertIs(call[2], data)
        self.assertEqual(len(owner.received), len(sent))
        for got, (method, event, data) in zip(owner.received, sent):
            if method == "send_json":
                self.assertEqual(got, {"type": event, "data": data})
                self.assertIs(got["data"], data)
            else:
                self.assertEqual(got, struct.pack(">I", event) + bytes(data))
        for ws in watchers:
            self.assertEqual(len(ws.received), 6)  # all but status

    async def test_the_copy_is_offered_before_the_owner_is_sent_to(self):
        owner = self.connect("owner", SlowWS())
        watcher = await self.watcher("watcher")
        comfyui = asyncio.ensure_future(self.ps.send_json("progress", {"value": 1}, "owner"))
        self.addCleanup(comfyui.cancel)
        await settle()
        self.assertEqual(owner.attempts, 1)
        self.assertFalse(comfyui.done())  # ComfyUI still waits on its own client...
        self.assertEqual(
            self.copies(watcher), [("owner", "progress", {"value": 1})]
        )  # ...not the watcher

    async def test_owner_unaffected_when_the_bridge_part_fails(self):
        owner = self.connect("owner")
        watcher = await self.watcher("watcher")
        odd = [{"value": object()}, {"value": float("nan")}, {"value": object()}]
        for data in odd:
            await self.ps.send_json("executed", data, "owner")
        await self.ps.send_json("progress", {"value": 1}, "owner")
        await settle()
        self.assertEqual([m["data"] for m in owner.received[:3]], odd)
        for got, data in zip(owner.received, odd):
            self.assertIs(got["data"], data)
        self.assertEqual(self.copies(watcher), [("owner", "progress", {"value": 1})])
        warnings = self.logs.at(logging.WARNING)
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("executed", warnings[0])

        def broken(*args):
            raise RuntimeError("bridge bug")

        self.addCleanup(setattr, M, "encode_binary", M.encode_binary)
        M.encode_binary = broken
        self.addCleanup(setattr, M, "encode_text", M.encode_text)
        M.encode_text = broken
        self.logs.records.clear()
        for n in range(3):
            self.assertEqual(await self.ps.send_bytes(1, b"img%d" % n, "owner"), ("sent", 1))
            self.assertEqual(
                await self.ps.send_json("progress", {"value": n}, "owner"), ("sent", "progress")
            )
        await settle()
        self.assertEqual(len(owner.received), 4 + 6)
        self.assertEqual(
            owner.received[4::2], [bytearray(b"\x00\x00\x00\x01img%d" % n) for n in range(3)]
        )
        self.assertEqual(
            owner.received[5::2], [{"type": "progress", "data": {"value": n}} for n in range(3)]
        )
        self.assertEqual(len(self.ps.calls), 4 + 6)
        self.assertEqual(len(self.logs.at(logging.WARNING)), 1, self.logs.at(logging.WARNING))
        self.assertEqual(len(watcher.received), 1)


class WireFormat(BridgeTest):
    async def test_text_copy(self):
        owner_id = "tab-\u00e9\u4e2d"
        self.connect(owner_id)
        first, second = await self.watcher("w1"), await self.watcher("w2")
        counts = self.count_encoders()
        data = {"value": 3, "max": 20, "prompt_id": "p1", "node": "3"}
        await self.ps.send_json("progress", data, owner_id)
        await settle()
        self.assertEqual(counts, {"text": 1, "binary": 0})  # built once for both watchers
        [text] = first.received
        self.assertIs(second.received[0], text)
        self.assertIsInstance(text, str)
        self.assertEqual(
            text,
            json.dumps(
                {
                    "type": "comfytop_bridge",
                    "data": {"owner": owner_id, "type": "progress", "data": data},
                }
            ),
        )
        self.assertEqual(
            json.loads(text),
            {
                "type": "comfytop_bridge",
                "data": {"owner": owner_id, "type": "progress", "data": data},
            },
        )

    async def test_binary_copy(self):
        owner_id = "tab-\u00e9\u4e2d"
        self.connect(owner_id)
        first, second = await self.watcher("w1"), await self.watcher("w2")
        counts = self.count_encoders()
        metadata = json.dumps(
            {"node_id": "3", "prompt_id": "p1", "image_type": "image/png"}
        ).encode()
        payload = bytearray(struct.pack(">I", len(metadata)) + metadata + b"\x89PNG...")
        await self.ps.send_bytes(4, payload, owner_id)
        expected_payload = bytes(payload)
        payload[:] = b"reused by ComfyUI"  # the copy is ours
        await settle()
        self.assertEqual(counts, {"text": 0, "binary": 1})
        [frame] = first.received
        self.assertIs(second.received[0], frame)
        self.assertIsInstance(frame, bytes)
        owner_utf8 = owner_id.encode("utf-8")
        self.assertEqual(
            frame,
            b"CMTB"
            + struct.pack(">I", len(owner_utf8))
            + owner_utf8
            + struct.pack(">I", 4)
            + expected_payload,
        )
        self.assertEqual(parse_copy(frame), (owner_id, 4, expected_payload))


class NobodyWatching(BridgeTest):
    async def assert_no_cost(self):
        counts = self.count_encoders()
        targets = []
        original_targets = self.bridge.targets
        self.bridge.targets = lambda owner: targets.append(owner) or original_targets(owner)
        tasks = asyncio.all_tasks()
        owner = self.ps.sockets["owner"]
        before = len(owner.received)
        self.assertEqual(
            run_now(self.ps.send_json("progress", {"value": 1}, "owner")), ("sent", "progress")
        )
        self.assertEqual(run_now(self.ps.send_bytes(1, b"img", "owner")), ("sent", 1))
        self.assertEqual(asyncio.all_tasks(), tasks)
        self.assertEqual(counts, {"text": 0, "binary": 0})
        self.assertEqual(targets, [])
        self.assertEqual(len(owner.received), before + 2)
        self.assertEqual(self.clock.reads, 0)
        del self.bridge.targets

    async def test_nothing_is_done_while_nobody_watches(self):
        bystander = self.connect("bystander")
        self.connect("owner")
        await self.assert_no_cost()
        await settle()
        self.assertEqual(bystander.received, [])

    async def test_nothing_is_done_once_the_last_watcher_left(self):
        self.connect("owner")
        watcher = await self.watcher("watcher", GatedWS())
        await self.ps.send_json("progress", {"value": 0}, "owner")
        await settle()
        self.assertEqual(len(watcher.pending()), 1)  # a send under way, timed
        self.clock.reads = 0
        response = await self.watch("watcher", enabled=False)
        self.assertEqual(
            (response.status, response.body), (200, {"watching": False, "version": "1.0.0"})
        )
        await self.assert_no_cost()
        await settle()
        self.assertEqual(len(watcher.received), 0)  # the copy under way went with the registration


class SlowWatchers(BridgeTest):
    async def test_a_slow_watcher_blocks_nobody_and_is_dropped(self):
        owner = self.connect("owner")
        fast = await self.watcher("fast")
        slow = await self.watcher("slow", SlowWS())
        slow_watcher = self.bridge.watchers["slow"]
        await settle()
        sent = []

        def emit(method, event, data):
            # ComfyUI's call finishes at once, never waiting on a watcher.
            run_now(getattr(self.ps, method)(event, data, "owner"))
            sent.append(("owner", event, data))

        emit("send_json", "progress", {"value": 0})
        await settle()
        self.assertEqual(slow.attempts, 1)  # stuck on its first copy from now on
        for n in range(1, M.PREVIEW_SKIP_BACKLOG + 1):
            emit("send_json", "progress", {"value": n})
        await settle()  # the fast one catches up, the slow one cannot
        self.assertEqual(slow_watcher.queue.qsize(), M.PREVIEW_SKIP_BACKLOG)
        emit("send_bytes", 1, b"preview 1")
        emit("send_bytes", 4, b"preview 4")
        self.assertEqual(slow_watcher.skipped, 2)
        emit("send_bytes", 3, b"progress text")  # not a preview: kept
        self.assertEqual(slow_watcher.queue.qsize(), M.PREVIEW_SKIP_BACKLOG + 1)
        n = 0
        while slow_watcher.queue.qsize() < M.DROP_BACKLOG:
            n += 1
            emit("send_json", "executing", {"node": str(n)})
            if n % 100 == 0:
                await settle()
        self.assertIn("slow", self.bridge.watchers)
        self.assertEqual(self.logs.at(logging.WARNING), [])

        emit("send_json", "executed", {"node": "last"})
        self.assertNotIn("slow", self.bridge.watchers)
        self.assertIsNone(slow_watcher.queue)
        [warning] = self.logs.at(logging.WARNING)
        self.assertIn("slow", warning)
        await settle()
        self.assertIn("1000 messages behind", warning)
        await settle()
        self.assertEqual(slow.closed, (1013, b"comfytop bridge: watcher too far behind"))
        self.assertTrue(slow_watcher.task.cancelled())
        for n in range(20):
            emit("send_bytes", 1, b"later")
            emit("send_json", "progress", {"value": n})
            await settle()
        self.assertEqual(slow.attempts, 1)
        self.assertEqual(len(self.logs.at(logging.WARNING)), 1)
        self.assertEqual(self.copies(fast), sent)
        self.assertEqual(len(owner.received), len(sent))
        self.assertEqual((await self.info())["watchers"], 1)

    def emit_progress(self, value, owner="owner"):
        """A progress event from ComfyUI, whose call must finish at once."""
        result = run_now(self.ps.send_json("progress", {"value": value}, owner))
        self.assertEqual(result, ("sent", "progress"))

    async def test_a_stalled_watcher_is_dropped_after_stall_seconds(self):
        self.assertEqual(M.STALL_SECONDS, 10)
        owner = self.connect("owner")
        fast = await self.watcher("fast")
        slow = await self.watcher("slow", SlowWS())
        slow_watcher = self.bridge.watchers["slow"]
        queue = slow_watcher.queue
        self.emit_progress(0)
        await settle()
        self.assertEqual(slow.attempts, 1)  # its send began now and never completes
        self.clock.now += M.STALL_SECONDS - 0.001
        self.emit_progress(1)
        self.assertIn("slow", self.bridge.watchers)
        self.assertEqual(queue.qsize(), 1)
        self.assertEqual(self.logs.at(logging.WARNING), [])

        self.clock.now += 0.001
        self.emit_progress(2)
        self.assertNotIn("slow", self.bridge.watchers)
        self.assertEqual(queue.qsize(), 1)  # the copy that found it stalled was not queued
        self.assertIsNone(slow_watcher.queue)
        [warning] = self.logs.at(logging.WARNING)
        self.assertIn("watcher slow, stalled for 10 s", warning)
        self.assertNotIn("behind", warning)
        await settle()
        self.assertEqual(slow.closed, (1013, b"comfytop bridge: watcher too far behind"))
        self.assertTrue(slow_watcher.task.cancelled())
        for n in range(3, 6):
            self.clock.now += M.STALL_SECONDS
            self.emit_progress(n)
            await settle()
        self.assertEqual(slow.attempts, 1)
        self.assertEqual(len(self.logs.at(logging.WARNING)), 1)
        self.assertEqual(self.copies(fast), [("owner", "progress", {"value": n}) for n in range(6)])
        self.assertEqual(len(owner.received), 6)
        self.assertEqual(fast.closed, None)
        self.assertEqual((await self.info())["watchers"], 1)

    async def test_a_stall_is_noticed_on_its_own_prompt_and_on_requests(self):
        self.connect("owner")
        slow = await self.watcher("slow", SlowWS())
        self.emit_progress(0)
        await settle()
        self.assertEqual(slow.attempts, 1)
        self.clock.now += M.STALL_SECONDS
        # Its own prompt: no copy for it, but checked before ComfyUI sends to it (and waits).
        comfyui = asyncio.ensure_future(self.ps.send_json("progress", {"value": 1}, "slow"))
        self.addCleanup(comfyui.cancel)
        await settle()
        self.assertEqual(slow.attempts, 2)
        self.assertEqual(self.bridge.watchers, {})
        [warning] = self.logs.at(logging.WARNING)
        self.assertIn("watcher slow, stalled for 10 s", warning)
        self.assertEqual(slow.closed, (1013, b"comfytop bridge: watcher too far behind"))

        # ComfyUI has not noticed the closed socket yet; the client registers again on it.
        await self.watcher("slow", slow)
        self.emit_progress(2)
        await settle()
        self.assertEqual(slow.attempts, 3)
        self.clock.now += M.STALL_SECONDS
        self.assertEqual((await self.info())["watchers"], 0)
        self.assertEqual(len(self.logs.at(logging.WARNING)), 2)

    async def test_slow_sends_that_complete_are_not_a_stall(self):
        self.connect("owner")
        lagging = await self.watcher("lagging", GatedWS())
        self.emit_progress(0)
        await settle()
        for n in range(1, 6):
            # Each send takes most of STALL_SECONDS; together they take far longer.
            self.clock.now += M.STALL_SECONDS - 1
            self.emit_progress(n)  # offered while the send before it is still under way
            lagging.complete()
            await settle()
            self.assertEqual(len(lagging.pending()), 1)  # the next one has begun
        self.assertIn("lagging", self.bridge.watchers)
        self.assertEqual(self.logs.at(logging.WARNING), [])
        self.assertEqual(lagging.closed, None)
        lagging.complete()
        await settle()
        expected = [("owner", "progress", {"value": n}) for n in range(6)]
        self.assertEqual(self.copies(lagging), expected)

    async def test_the_stall_clock_restarts_with_each_send(self):
        self.connect("owner")
        lagging = await self.watcher("lagging", GatedWS())
        self.emit_progress(0)
        await settle()
        self.clock.now += M.STALL_SECONDS - 1
        lagging.complete()
        await settle()
        self.assertEqual(lagging.pending(), [])  # idle: nothing under way, nothing to time
        self.clock.now += 10 * M.STALL_SECONDS
        self.emit_progress(1)  # long after the last send began, but none is under way
        self.assertIn("lagging", self.bridge.watchers)
        await settle()
        began = self.clock.now  # the second send began when it was offered
        self.clock.now = began + M.STALL_SECONDS - 1
        self.emit_progress(2)
        self.assertIn("lagging", self.bridge.watchers)
        self.assertEqual((await self.info())["watchers"], 1)
        self.clock.now = began + M.STALL_SECONDS
        self.emit_progress(3)
        self.assertNotIn("lagging", self.bridge.watchers)
        [warning] = self.logs.at(logging.WARNING)
        self.assertIn("watcher lagging, stalled for 10 s", warning)
        await settle()
        self.assertEqual(lagging.closed, (1013, b"comfytop bridge: watcher too far behind"))
        self.assertEqual(self.copies(lagging), [("owner", "progress", {"value": 0})])

    async def test_a_failing_send_ends_only_that_watcher_quietly(self):
        self.connect("owner")
        good = await self.watcher("good")
        await self.watcher("broken", BrokenWS())
        await self.ps.send_json("progress", {"value": 1}, "owner")
        await settle()
        self.assertNotIn("broken", self.bridge.watchers)
        self.assertEqual(self.logs.at(logging.WARNING), [])
        await self.ps.send_json("progress", {"value": 2}, "owner")
        await settle()
        self.assertEqual(
            self.copies(good),
            [("owner", "progress", {"value": 1}), ("owner", "progress", {"value": 2})],
        )


class Disabled(unittest.IsolatedAsyncioTestCase):
    def partial_server(self, missing):
        methods = {
            "send_json": FakePromptServer.send_json,
            "send_bytes": FakePromptServer.send_bytes,
        }
        methods["deliver"] = FakePromptServer.deliver
        methods["encode_bytes"] = FakePromptServer.encode_bytes
        methods.pop(missing, None)
        server = type("OldPromptServer", (), methods)()
        server.calls = []
        if missing != "routes":
            server.routes = RouteTableDef()
        if missing != "sockets":
            server.sockets = {}
        return server

    async def test_a_missing_hook_disables_with_one_warning(self):
        for missing in ("routes", "sockets", "send_json", "send_bytes"):
            with self.subTest(missing=missing), Logs() as logs:
                server = self.partial_server(missing)
                bridge = M.install(server, fake_web)
                [warning] = logs.at(logging.WARNING)
                self.assertEqual([r.levelno for r in logs.records], [logging.WARNING])
                self.assertTrue(warning.startswith("comfytop bridge 1.0.0 disabled: "), warning)
                self.assertIn(missing, warning)
                self.assertNotIn("send_json", vars(server))
                self.assertNotIn("send_bytes", vars(server))
                self.assertIn(missing, bridge.reason)
                if missing == "routes":
                    continue
                get = server.routes.handlers[("GET", "/comfytop/bridge")]
                response = await get(Request(None))
                self.assertEqual(response.status, 200)
                self.assertEqual(
                    response.body,
                    {
                        "name": "comfytop-bridge",
                        "version": "1.0.0",
                        "protocol": 1,
                        "enabled": False,
                        "reason": bridge.reason,
                        "watchers": 0,
                    },
                )
                post = server.routes.handlers[("POST", "/comfytop/bridge/watch")]
                response = await post(Request(json.dumps({"clientId": "a", "enabled": True})))
                self.assertEqual(response.status, 503)
                self.assertIn(missing, response.body["error"])
                self.assertEqual(len(logs.records), 1)

    async def test_without_comfyui_server_module(self):
        with Logs() as logs:
            module = load_bridge(None)
        self.assertEqual([r.levelno for r in logs.records], [logging.WARNING])
        self.assertTrue(logs.records[0].getMessage().startswith("comfytop bridge 1.0.0 disabled: "))
        self.assertIsNone(module.BRIDGE)
        self.assertEqual((module.NODE_CLASS_MAPPINGS, module.NODE_DISPLAY_NAME_MAPPINGS), ({}, {}))

    async def test_without_a_prompt_server_instance(self):
        with Logs() as logs:
            module = load_bridge(server_module(None))
        [warning] = logs.at(logging.WARNING)
        self.assertEqual(len(logs.records), 1)
        self.assertIn("PromptServer.instance", warning)
        self.assertIsNotNone(module.BRIDGE.reason)

    async def test_loading_into_a_running_comfyui(self):
        server = FakePromptServer()
        with Logs() as logs:
            module = load_bridge(server_module(server))
        self.assertEqual([r.levelno for r in logs.records], [logging.INFO])
        self.assertEqual(
            logs.records[0].getMessage(),
            "comfytop bridge 1.0.0: relaying execution events to watchers; "
            "check with GET /comfytop/bridge",
        )
        self.assertIsNone(module.BRIDGE.reason)
        self.assertIs(module.BRIDGE.clock, time.monotonic)
        self.assertIs(vars(server)["send_json"].__wrapped__.__func__, FakePromptServer.send_json)
        self.assertIs(vars(server)["send_bytes"].__wrapped__.__func__, FakePromptServer.send_bytes)
        self.assertEqual(
            sorted(server.routes.handlers),
            [("GET", "/comfytop/bridge"), ("POST", "/comfytop/bridge/watch")],
        )
        self.assertEqual((module.NODE_CLASS_MAPPINGS, module.NODE_DISPLAY_NAME_MAPPINGS), ({}, {}))


class Registration(BridgeTest):
    async def test_info(self):
        expected = {
            "name": "comfytop-bridge",
            "version": "1.0.0",
            "protocol": 1,
            "enabled": True,
            "watchers": 0,
        }
        self.assertEqual(await self.info(), expected)
        await self.watcher("a")
        await self.watcher("b")
        self.assertEqual((await self.info())["watchers"], 2)

    async def test_unknown_client_is_409(self):
        self.connect("someone-else")
        response = await self.watch("nope")
        self.assertEqual(response.status, 409)
        self.assertEqual(
            response.body["error"],
            "no WebSocket with clientId nope is connected; open /ws?clientId=nope first",
        )
        self.assertEqual(
            (await self.watch("")).status, 409
        )  # ComfyUI never keeps a socket under ""
        self.assertEqual(self.bridge.watchers, {})

    async def test_bad_bodies_are_400(self):
        self.connect("a")
        bodies = [
            "",
            "not json",
            "[1, 2]",
            "null",
            {},
            {"enabled": True},
            {"clientId": 5, "enabled": True},
            {"clientId": None, "enabled": True},
            {"clientId": ["a"], "enabled": True},
        ]
        for body in bodies:
            with self.subTest(body=body):
                response = await self.request("POST", "/comfytop/bridge/watch", body)
                self.assertEqual(response.status, 400)
                self.assertIsInstance(response.body["error"], str)
        self.assertEqual(self.bridge.watchers, {})

    async def test_enabled_is_read_as_python_reads_it(self):
        self.connect("a")
        for enabled, watching in (
            (None, True),
            (1, True),
            ("yes", True),
            (0, False),
            ("", False),
            (None, True),
        ):
            with self.subTest(enabled=enabled):
                body = (
                    {"clientId": "a"} if enabled is None else {"clientId": "a", "enabled": enabled}
                )
                response = await self.request("POST", "/comfytop/bridge/watch", body)
                self.assertEqual(
                    (response.status, response.body),
                    (200, {"watching": watching, "version": "1.0.0"}),
                )
                self.assertEqual("a" in self.bridge.watchers, watching)

    async def test_enabled_false_unregisters(self):
        self.connect("owner")
        ws = await self.watcher("w")
        task = self.bridge.watchers["w"].task
        response = await self.watch("w", enabled=False)
        self.assertEqual(
            (response.status, response.body), (200, {"watching": False, "version": "1.0.0"})
        )
        await self.ps.send_json("progress", {"value": 1}, "owner")
        await settle()
        self.assertEqual(ws.received, [])
        self.assertTrue(task.cancelled())
        self.assertEqual((await self.info())["watchers"], 0)
        response = await self.watch("never-registered", enabled=False)
        self.assertEqual(response.status, 200)

    async def test_registering_again_replaces(self):
        self.connect("owner")
        ws = await self.watcher("w")
        first = self.bridge.watchers["w"]
        await self.watcher("w", ws)
        await self.ps.send_json("progress", {"value": 1}, "owner")
        await settle()
        self.assertTrue(first.task.cancelled())
        self.assertEqual(self.copies(ws), [("owner", "progress", {"value": 1})])

    async def test_a_reconnect_ends_the_registration(self):
        self.connect("owner")
        old = await self.watcher("w")
        new = self.connect("w")  # the same client id on a new socket
        await self.ps.send_json("progress", {"value": 1}, "owner")
        await settle()
        self.assertEqual((old.received, new.received), ([], []))
        self.assertEqual(self.bridge.watchers, {})
        await self.watcher("w", new)
        await self.ps.send_json("progress", {"value": 2}, "owner")
        await settle()
        self.assertEqual(self.copies(new), [("owner", "progress", {"value": 2})])

        del self.ps.sockets["w"]  # closed
        self.assertEqual((await self.info())["watchers"], 0)

    async def test_copies_queued_for_a_replaced_socket_are_not_sent(self):
        self.connect("owner")
        old = await self.watcher("w")
        await self.ps.send_json("progress", {"value": 1}, "owner")
        self.connect("w")
        await settle()
        self.assertEqual(old.received, [])
        self.assertEqual(self.bridge.watchers, {})

    async def test_too_many_watchers_is_429(self):
        for n in range(M.MAX_WATCHERS):
            await self.watcher("w%d" % n)
        self.connect("extra")
        response = await self.watch("extra")
        self.assertEqual(response.status, 429)
        self.assertEqual(response.body, {"error": "the bridge relays to 64 watchers at most"})
        response = await self.watch("w0")  # registering again is not one more
        self.assertEqual(response.status, 200)
        del self.ps.sockets["w1"]  # one left
        response = await self.watch("extra")
        self.assertEqual(response.status, 200)
        self.assertEqual((await self.info())["watchers"], M.MAX_WATCHERS)


if __name__ == "__main__":
    unittest.main()
