"""comfytop bridge: lets comfytop watch every prompt on a ComfyUI server, not only its own.

ComfyUI sends a prompt's execution events and preview frames only to the WebSocket of the
client that queued it (its "owner"). This custom node relays a copy of those messages to the
clients that asked to watch, tagged with the owner's client id. It adds no node types.

Watching:
    GET  /comfytop/bridge        -> {"name": "comfytop-bridge", "version": "1.0.0",
                                     "protocol": 1, "enabled": true, "watchers": <count>}
                                    (when disabled: "enabled": false, "reason": "<why>")
    POST /comfytop/bridge/watch  body {"clientId": "<sid>", "enabled": true|false}
                                    -> {"watching": true|false, "version": "1.0.0"}
    (ComfyUI also serves both under /api/...). The client first opens /ws?clientId=<sid>, then
    registers that id; the registration lasts as long as that socket and is made again after
    each reconnect. Errors: 400 bad body, 409 no such socket, 429 too many watchers, 503 disabled.

Wire format of a copy, sent to each watcher other than the owner:
    text:   {"type": "comfytop_bridge",
             "data": {"owner": "<sid>", "type": "<event>", "data": <the event's data>}}
            for execution_start, execution_cached, executing, progress, progress_state,
            executed, execution_success, execution_error, execution_interrupted.
    binary: u32 0x434D5442 ("CMTB"), u32 N, N bytes owner sid (UTF-8), then the frame as
            ComfyUI sends it: u32 event type, payload; for types 1 (preview image),
            3 (progress text) and 4 (preview image with metadata).
    All integers big-endian. Messages ComfyUI broadcasts already reach every client and are
    not copied.

Never in the way: a watcher's copies go through its own queue and sender task, so ComfyUI
never waits for a copy to be sent. Past PREVIEW_SKIP_BACKLOG queued messages a watcher gets no
more preview frames. A watcher is dropped and its socket closed (code 1013), so it reconnects
and reads the queue and history afresh, at whichever limit it reaches first:
    - DROP_BACKLOG messages wait in its queue;
    - a send to it has been under way for STALL_SECONDS. A client that stopped reading (a
      stalled ssh tunnel, say) fills its socket's buffer; the send then waits, and so would
      ComfyUI's own messages to that socket, holding up ComfyUI's messages to every client.
The stall is checked with each execution event or frame ComfyUI sends to a client and on the
bridge's HTTP requests, the backlog with each copy queued; no timer runs, and nothing is
checked while nobody watches. Errors in the bridge are logged and never reach ComfyUI.

No authentication of its own: a copy holds nothing that ComfyUI's /history and /view do not
already give to whoever can reach the server, so the bridge is as open as the server is.
"""

import asyncio
import json
import logging
import struct
import time

VERSION = "1.0.0"
PROTOCOL = 1
RELAYED_TYPE = "comfytop_bridge"
# ASCII "CMTB": the event type of a relayed binary frame.
RELAYED_BINARY = 0x434D5442
PREVIEW_SKIP_BACKLOG = 8
DROP_BACKLOG = 1000
# Seconds a send to a watcher may stay under way before the watcher is dropped.
STALL_SECONDS = 10
MAX_WATCHERS = 64

FORWARDED_JSON = frozenset(
    (
        "execution_start",
        "execution_cached",
        "executing",
        "progress",
        "progress_state",
        "executed",
        "execution_success",
        "execution_error",
        "execution_interrupted",
    )
)
FORWARDED_BINARY = frozenset((1, 3, 4))
PREVIEW_BINARY = frozenset((1, 4))
HOOKS = ("routes", "sockets", "send_json", "send_bytes")
# A dropped watcher's socket may be stuck too: past this, aiohttp aborts its transport.
CLOSE_TIMEOUT = 10.0
DROP_CLOSE_MESSAGE = b"comfytop bridge: watcher too far behind"

# Propagates to the root logger, which ComfyUI writes to its console and log.
log = logging.getLogger("comfytop_bridge")

# ComfyUI's loader skips a module without node mappings.
NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}


def encode_text(owner, event, data):
    """The text copy of a JSON event; raises TypeError/ValueError for data that is not JSON."""
    # allow_nan=False: NaN is not JSON and a strict parser would reject the whole message.
    return json.dumps(
        {"type": RELAYED_TYPE, "data": {"owner": owner, "type": event, "data": data}},
        allow_nan=False,
    )


def encode_binary(owner, event, data):
    """The binary copy of a frame: magic, owner, then the frame as ComfyUI sends it."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("binary event data is %s, not bytes" % type(data).__name__)
    owner_bytes = owner.encode("utf-8")
    return (
        struct.pack(">II", RELAYED_BINARY, len(owner_bytes))
        + owner_bytes
        + struct.pack(">I", event)
        + bytes(data)
    )


class Watcher:
    """One registration: a client id, the socket it was made for, its queue and sender."""

    __slots__ = ("sid", "ws", "queue", "task", "skipped", "sending_since")

    def __init__(self, sid, ws):
        self.sid = sid
        self.ws = ws
        self.queue = asyncio.Queue()
        self.task = None
        self.skipped = 0  # preview frames skipped because the queue was behind
        self.sending_since = None  # the clock when the send under way began, or None


class Bridge:
    """The watchers of one PromptServer, the copies offered to them, and the HTTP routes."""

    def __init__(self, prompt_server, web, reason=None):
        self.server = prompt_server
        self.web = web
        self.reason = reason  # why the bridge is disabled, or None
        self.watchers = {}  # sid -> Watcher
        self.closing = set()  # close tasks, referenced until done
        self.logged = set()  # kinds of trouble already logged
        self.clock = time.monotonic  # times the sends, for STALL_SECONDS

    # --- the hooks -------------------------------------------------------------------------

    def hook(self, original, offer):
        async def hooked(event, data, sid=None):
            # The only cost while nobody watches: this emptiness check.
            if self.watchers:
                try:
                    offer(event, data, sid)
                except Exception as err:
                    self.log_once(("offer", type(err)), "relaying %r failed: %r", event, err)
            return await original(event, data, sid)

        hooked.__wrapped__ = original
        return hooked

    def offer_json(self, event, data, owner):
        if owner is None or event not in FORWARDED_JSON:
            return
        targets = self.targets(owner)
        if not targets:
            return
        try:
            text = encode_text(owner, event, data)
        except (TypeError, ValueError) as err:
            self.log_once(("json", event), "not relaying %s: its data is not JSON (%s)", event, err)
            return
        for watcher in targets:
            self.put(watcher, text, preview=False)

    def offer_bytes(self, event, data, owner):
        if owner is None or event not in FORWARDED_BINARY:
            return
        targets = self.targets(owner)
        if not targets:
            return
        frame = encode_binary(owner, event, data)
        preview = event in PREVIEW_BINARY
        for watcher in targets:
            self.put(watcher, frame, preview)

    def targets(self, owner):
        """Live watchers other than the owner (which gets its own message anyway)."""
        return [watcher for watcher in self.prune() if watcher.sid != owner]

    def put(self, watcher, item, preview):
        backlog = watcher.queue.qsize()
        if backlog >= DROP_BACKLOG:
            self.drop(watcher, "%d messages behind" % backlog)
        elif preview and backlog >= PREVIEW_SKIP_BACKLOG:
            # An old preview is worth nothing once newer ones exist; progress still gets through.
            watcher.skipped += 1
        else:
            watcher.queue.put_nowait(item)

    # --- watchers --------------------------------------------------------------------------

    def alive(self, watcher):
        # A closed socket leaves `sockets`; a reconnect with the same id puts another there.
        return self.server.sockets.get(watcher.sid) is watcher.ws

    def unregister(self, watcher):
        if self.watchers.get(watcher.sid) is watcher:
            del self.watchers[watcher.sid]
        if watcher.task is not None and watcher.task is not current_task():
            watcher.task.cancel()

    def drop(self, watcher, reason):
        self.unregister(watcher)
        watcher.queue = None  # what it had not received is gone; it reads the state afresh
        log.warning(
            "comfytop bridge: dropped watcher %s, %s (%d previews skipped); "
            "closing its socket so it reconnects",
            watcher.sid,
            reason,
            watcher.skipped,
        )
        task = asyncio.get_running_loop().create_task(self.close(watcher.ws))
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)

    async def close(self, ws):
        try:
            await asyncio.wait_for(ws.close(code=1013, message=DROP_CLOSE_MESSAGE), CLOSE_TIMEOUT)
        except Exception:
            pass  # it is going away either way

    async def send_loop(self, watcher):
        try:
            while True:
                item = await watcher.queue.get()
                if not self.alive(watcher):
                    break
                # aiohttp's send waits while the socket's buffer is full: a client that stopped
                # reading keeps it waiting, which the next offer or HTTP request notices.
                watcher.sending_since = self.clock()
                if isinstance(item, str):
                    await watcher.ws.send_str(item)
                else:
                    await watcher.ws.send_bytes(item)
                watcher.sending_since = None
        except Exception as err:
            log.debug("comfytop bridge: watcher %s is gone: %r", watcher.sid, err)
        finally:
            self.unregister(watcher)

    def register(self, sid, ws):
        old = self.watchers.get(sid)
        if old is not None:
            self.unregister(old)
        watcher = Watcher(sid, ws)
        watcher.task = asyncio.get_running_loop().create_task(self.send_loop(watcher))
        self.watchers[sid] = watcher

    def prune(self):
        """Ends the registrations whose socket is gone, drops the stalled; returns the rest."""
        live = []
        now = None  # read once, and only if a send is under way
        for watcher in list(self.watchers.values()):
            if not self.alive(watcher):
                self.unregister(watcher)
                continue
            if watcher.sending_since is not None:
                if now is None:
                    now = self.clock()
                stalled = now - watcher.sending_since
                if stalled >= STALL_SECONDS:
                    self.drop(watcher, "stalled for %d s" % stalled)
                    continue
            live.append(watcher)
        return live

    # --- HTTP ------------------------------------------------------------------------------

    async def handle_info(self, request):
        body = {"name": "comfytop-bridge", "version": VERSION, "protocol": PROTOCOL}
        if self.reason is not None:
            body.update(enabled=False, reason=self.reason, watchers=0)
        else:
            self.prune()
            body.update(enabled=True, watchers=len(self.watchers))
        return self.web.json_response(body)

    async def handle_watch(self, request):
        if self.reason is not None:
            return self.error(503, "comfytop bridge disabled: %s" % self.reason)
        try:
            body = await request.json()
        except Exception:
            return self.error(400, "the body is not a JSON object")
        if not isinstance(body, dict):
            return self.error(400, "the body is not a JSON object")
        sid = body.get("clientId")
        if not isinstance(sid, str):
            return self.error(400, 'no string "clientId"')
        # Read the way ComfyUI reads its /internal/logs/subscribe flag; absent means watch.
        if not body.get("enabled", True):
            old = self.watchers.get(sid)
            if old is not None:
                self.unregister(old)
            return self.web.json_response({"watching": False, "version": VERSION})
        ws = self.server.sockets.get(sid)
        if ws is None:
            return self.error(
                409,
                "no WebSocket with clientId %s is connected; open /ws?clientId=%s first"
                % (sid, sid),
            )
        self.prune()
        if sid not in self.watchers and len(self.watchers) >= MAX_WATCHERS:
            return self.error(429, "the bridge relays to %d watchers at most" % MAX_WATCHERS)
        self.register(sid, ws)
        return self.web.json_response({"watching": True, "version": VERSION})

    def error(self, status, message):
        body = {"error": message}
        if status == 503:
            body["reason"] = self.reason
        return self.web.json_response(body, status=status)

    def log_once(self, kind, message, *args):
        if kind not in self.logged:
            self.logged.add(kind)
            log.warning("comfytop bridge: " + message + " (logged once)", *args)


def current_task():
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None


def install(prompt_server, web):
    """Hooks the bridge into a PromptServer (or disables it with one warning); returns it."""
    if prompt_server is None:
        missing = ["PromptServer.instance"]
    else:
        missing = ["PromptServer.instance." + n for n in HOOKS if not hasattr(prompt_server, n)]
    reason = None
    if missing:
        reason = "this ComfyUI has no %s" % ", ".join(missing)
        log.warning(
            "comfytop bridge %s disabled: %s; ComfyUI runs unchanged, nothing is relayed",
            VERSION,
            reason,
        )
    bridge = Bridge(prompt_server, web, reason)
    routes = getattr(prompt_server, "routes", None)
    if routes is not None:
        routes.get("/comfytop/bridge")(bridge.handle_info)
        routes.post("/comfytop/bridge/watch")(bridge.handle_watch)
    if reason is None:
        # Instance attributes shadow the methods, and ComfyUI calls them through the instance.
        prompt_server.send_json = bridge.hook(prompt_server.send_json, bridge.offer_json)
        prompt_server.send_bytes = bridge.hook(prompt_server.send_bytes, bridge.offer_bytes)
        log.info(
            "comfytop bridge %s: relaying execution events to watchers; "
            "check with GET /comfytop/bridge",
            VERSION,
        )
    return bridge


def install_in_comfyui():
    """Installs the bridge into the running ComfyUI, if this module was loaded by one."""
    try:
        import server
        from aiohttp import web
    except Exception as err:  # not inside ComfyUI, or a ComfyUI this file does not know
        log.warning(
            "comfytop bridge %s disabled: cannot import ComfyUI's server module (%s); "
            "nothing is relayed",
            VERSION,
            err,
        )
        return None
    prompt_server_class = getattr(server, "PromptServer", None)
    return install(getattr(prompt_server_class, "instance", None), web)


BRIDGE = install_in_comfyui()
