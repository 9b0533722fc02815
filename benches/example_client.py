#!/usr/bin/env python3
"""A second floor: the client of ComfyUI's own script_examples/websockets_api_example.py, which
reads the socket with websocket-client, cut down to parsing what comes (JSON decoded, binary
frames' type read), nothing shown. Needs websocket-client (`pip install websocket-client`).

    python3 benches/example_client.py http://127.0.0.1:8188 CLIENT_ID
"""

import json, sys

import websocket  # websocket-client, as in ComfyUI's example

ws = websocket.WebSocket()
ws.connect(f"ws://{sys.argv[1].split('//')[1]}/ws?clientId={sys.argv[2]}")
kinds = {}
while True:
    out = ws.recv()
    kind = json.loads(out)["type"] if isinstance(out, str) else int.from_bytes(out[:4], "big")
    kinds[kind] = kinds.get(kind, 0) + 1
