#!/usr/bin/env python3
"""The floor: a bare client that connects to ComfyUI's WebSocket and only parses what comes
(JSON text frames decoded, binary frames' type read), nothing shown. Standard library only.

    python3 benches/floor_client.py http://127.0.0.1:8188 CLIENT_ID
"""

import base64, json, os, socket, struct, sys

host, port = sys.argv[1].split("//")[1].split(":")
sock = socket.create_connection((host, int(port)))
key = base64.b64encode(os.urandom(16)).decode()
sock.sendall(f"GET /ws?clientId={sys.argv[2]} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
stream = sock.makefile("rb")
while stream.readline() not in (b"\r\n", b""):
    pass  # the 101 answer's headers
kinds = {}
while header := stream.read(2):
    size = header[1] & 0x7F
    size = struct.unpack(">H", stream.read(2))[0] if size == 126 else struct.unpack(">Q", stream.read(8))[0] if size == 127 else size
    payload, opcode = stream.read(size), header[0] & 0x0F
    kind = json.loads(payload)["type"] if opcode == 1 else struct.unpack(">I", payload[:4])[0] if opcode == 2 else None
    kinds[kind] = kinds.get(kind, 0) + 1
