#!/usr/bin/env python3
"""Fills fuzz/corpus/<target>/ with seeds from the recorded ComfyUI transcripts.

binary_frame gets every binary frame (the decoded "b64"), json_message every text frame,
transcript_line every transcript whole and each of its lines. tracker_sequence builds its
inputs with `arbitrary` and starts from nothing. Files are named by their SHA-1, as libFuzzer
names what it adds, so running this again adds nothing twice.
"""

import base64
import hashlib
import json
import pathlib

FUZZ = pathlib.Path(__file__).resolve().parent
TRANSCRIPTS = FUZZ.parent / "tests" / "fixtures" / "comfyui-0.3.64" / "transcripts"


def seed(target: str, data: bytes) -> None:
    directory = FUZZ / "corpus" / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main() -> None:
    for path in sorted(TRANSCRIPTS.glob("*.jsonl")):
        whole = path.read_bytes()
        seed("transcript_line", whole)
        for line in whole.splitlines():
            if not line.strip():
                continue
            seed("transcript_line", line + b"\n")
            record = json.loads(line)
            if record.get("kind") == "binary":
                seed("binary_frame", base64.b64decode(record["b64"]))
            elif record.get("kind") == "text":
                if "data" in record:
                    text = json.dumps(record["data"], separators=(",", ":"), ensure_ascii=False)
                else:
                    text = record["text"]
                seed("json_message", text.encode())
    for target in ("binary_frame", "json_message", "transcript_line"):
        count = len(list((FUZZ / "corpus" / target).iterdir()))
        print(f"corpus/{target}: {count} files")


if __name__ == "__main__":
    main()
