"""A hostile stand-in for executor.py, for the hostile-sandbox suite (run through the fake driver's
`executorScript` hook; never in a real sandbox).

It says `ready` like the real executor, then treats the `code` of every `exec` request as a JSON
list of steps telling it what to write back, byte for byte, so the test decides every frame:

  ["frame", rid, kind, b64]        one frame; rid is a number or "self" / "self+N" (the request's id)
  ["json", rid, text, count]       a J frame whose payload is `text` (NaN, Infinity, anything), `count` times
  ["header", length, rid, kind]    only a frame header, claiming `length` (a huge or truncated frame)
  ["raw", b64, count]              raw bytes, `count` times
  ["big", rid, kind, size]         one frame of `size` payload bytes (may be far over the host's bound)
  ["flood", rid, total, chunk]     `total` bytes of valid stdout events, `chunk` bytes each
  ["drip", b64, delay_ms]          bytes one at a time
  ["dripframe", rid, kind, b64, delay_ms, cut]
                                   a frame one byte at a time, only its first `cut` bytes if cut >= 0
  ["stop"] / ["close"] / ["exit", code] / ["sleep", ms]
                                   SIGSTOP itself, close its stdout, exit, wait
Any other request (and `cancel`) is ignored: a call whose steps never say `done` is left hanging.
"""

import base64
import json
import os
import signal
import struct
import sys
import time

_in = os.fdopen(os.dup(0), "rb", buffering=0)
OUT = 1


def write(data):
    view = memoryview(data)
    while view:
        view = view[os.write(OUT, view):]


def frame(rid, kind, payload=b""):
    write(struct.pack(">IIB", 5 + len(payload), rid, kind) + payload)


def read_exact(n):
    buf = bytearray()
    while len(buf) < n:
        chunk = _in.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def request_id(value, own):
    if isinstance(value, str) and value.startswith("self"):
        return (own + int(value[4:] or 0)) & 0xFFFFFFFF
    return int(value) & 0xFFFFFFFF


def run(steps, own):
    for step in steps:
        op = step[0]
        if op == "frame":
            frame(request_id(step[1], own), step[2], base64.b64decode(step[3]))
        elif op == "json":
            for _ in range(step[3] if len(step) > 3 else 1):
                frame(request_id(step[1], own), 0x4A, step[2].encode("utf-8", "surrogatepass"))
        elif op == "header":
            write(struct.pack(">IIB", step[1] & 0xFFFFFFFF, request_id(step[2], own), step[3]))
        elif op == "raw":
            data = base64.b64decode(step[1])
            for _ in range(step[2]):
                write(data)
        elif op == "big":
            size = step[3]
            write(struct.pack(">IIB", (5 + size) & 0xFFFFFFFF, request_id(step[1], own), step[2]))
            block = b"x" * (1 << 20)
            while size > 0:
                write(block[: min(size, len(block))])
                size -= len(block)
        elif op == "flood":
            rid, total, chunk = request_id(step[1], own), step[2], step[3]
            payload = json.dumps({"ev": "stdout", "text": "y" * chunk}).encode()
            for _ in range(max(1, total // chunk)):
                frame(rid, 0x4A, payload)
        elif op == "drip":
            for b in base64.b64decode(step[1]):
                write(bytes([b]))
                time.sleep(step[2] / 1000.0)
        elif op == "dripframe":
            payload = base64.b64decode(step[3])
            data = struct.pack(">IIB", 5 + len(payload), request_id(step[1], own), step[2]) + payload
            for b in data[: step[5]] if step[5] >= 0 else data:
                write(bytes([b]))
                time.sleep(step[4] / 1000.0)
        elif op == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        elif op == "close":
            os.close(OUT)
            return
        elif op == "exit":
            os._exit(step[1])
        elif op == "sleep":
            time.sleep(step[1] / 1000.0)


def main():
    # The host kills it by this pid if the host itself cannot; it dies with the test process.
    print("hostile-executor pid %d" % os.getpid(), file=sys.stderr, flush=True)
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    frame(0, 0x4A, json.dumps({"ev": "ready", "protocol": 1, "pid": os.getpid(), "runtimes": ["python", "nodejs"]}).encode())
    while True:
        header = read_exact(9)
        if header is None:
            return
        length, rid, kind = struct.unpack(">IIB", header)
        payload = read_exact(length - 5) if length > 5 else b""
        if payload is None:
            return
        if kind != 0x4A:
            continue
        msg = json.loads(payload)
        if msg.get("op") == "exec":
            run(json.loads(msg["code"]), rid)


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, OSError):
        sys.exit(0)
