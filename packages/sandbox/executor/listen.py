"""The executor's listen mode and its own rlimits (docs/executor-protocol.md, "Listen mode").

A Kubernetes pod has no host process holding the executor's stdin or a channel directory: the
executor listens on CODEBOX_LISTEN (`HOST:PORT`, or `unix:/path` for the fake kubelet), any API
replica may connect, and each connection must first present CODEBOX_EXECUTOR_TOKEN in one auth
frame. Whatever a connection sends before that is hostile: it is read with a size and a time
bound and answered with nothing but a close. An auth frame with `tunnel` (a port) makes the
connection a tunnel to that port on the pod's loopback instead of a channel (the inbound relay
pipes it, inbound_relay.py). A pod has no OCI rlimits of codebox's own either, so
the executor lowers CODEBOX_RLIMITS on itself before serving.
"""

import hmac
import json
import os
import re
import resource
import socket
import struct
import time

# Connections served at once, counting those that have not authenticated yet; one more is closed at once.
MAX_CONNECTIONS = 16
LISTEN_BACKLOG = 128
# How long a new connection has to present its auth frame, and the largest payload that frame may have.
AUTH_TIMEOUT_S = 10.0
MAX_AUTH_PAYLOAD = 4096
# A peer that vanished without a word (a replica's node gone) is noticed within about a minute.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 30, 10, 3
USER_TIMEOUT_MS = 60000

RLIMITS = {
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "core": resource.RLIMIT_CORE,
    "fsize": resource.RLIMIT_FSIZE,
}


class StartError(Exception):
    """A variable the executor cannot start with; the message names it."""


def parse_rlimits(text):
    """CODEBOX_RLIMITS: `key=N` items separated by commas, each key of RLIMITS at most once, N decimal."""
    limits = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if key not in RLIMITS:
            raise StartError("CODEBOX_RLIMITS: unknown limit %r in %r (known: %s)" % (key, text, ", ".join(RLIMITS)))
        if key in limits:
            raise StartError("CODEBOX_RLIMITS: %s is given twice in %r" % (key, text))
        if not sep or not re.fullmatch(r"[0-9]{1,19}", value):
            raise StartError("CODEBOX_RLIMITS: %s must be a decimal number, got %r" % (key, value))
        limits[key] = int(value)
    return limits


def apply_rlimits(limits):
    """Lowers the soft and hard limits to the given values (never raises one: a lower hard limit stays)."""
    for key, value in limits.items():
        which = RLIMITS[key]
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (OSError, ValueError) as e:
            raise StartError("CODEBOX_RLIMITS: cannot set %s to %d: %s" % (key, value, e))


def parse_listen(text):
    """CODEBOX_LISTEN: `unix:/absolute/path`, or `HOST:PORT` with HOST a numeric address (IPv6 in
    brackets: `[::]:7070`; no name is resolved, a pod has no DNS) and PORT 0-65535 (0: any free
    port, for tests). Returns (family, address)."""
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path.startswith("/") or "\0" in path or len(path.encode()) > 107:
            raise StartError("CODEBOX_LISTEN: %r must be unix:/absolute/path (at most 107 bytes)" % text)
        return socket.AF_UNIX, path
    m = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):([0-9]{1,5})", text)
    family = socket.AF_INET6 if m and m.group(1) else socket.AF_INET
    try:
        if m is None or int(m.group(3)) > 65535:
            raise ValueError
        host = m.group(1) or m.group(2)
        socket.inet_pton(family, host)
    except (OSError, ValueError):
        raise StartError("CODEBOX_LISTEN: %r must be HOST:PORT (a numeric address, [IPv6]:PORT) or unix:/absolute/path" % text)
    return family, (host, int(m.group(3)))


def open_listener(family, address):
    """The listening socket and how to name it in a log line."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_UNIX:
        try:
            os.unlink(address)
        except FileNotFoundError:
            pass
        listener.bind(address)
        os.chmod(address, 0o600)
        shown = "unix:" + address
    else:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        host, port = listener.getsockname()[:2]
        shown = ("[%s]:%d" if family == socket.AF_INET6 else "%s:%d") % (host, port)
    # The backlog only queues connects until they are accepted (and counted): a burst of probes
    # must not be refused before the executor sees it.
    listener.listen(LISTEN_BACKLOG)
    return listener, shown


def close_listener(listener, family, address):
    """Closes what open_listener opened, and removes its unix socket's name."""
    listener.close()
    if family == socket.AF_UNIX:
        try:
            os.unlink(address)
        except OSError:
            pass


def tune(conn):
    """Frames go out at once, and a peer gone without a FIN (its node died) ends the connection."""
    if conn.family == socket.AF_UNIX:
        return
    for level, name, value in (
        (socket.IPPROTO_TCP, "TCP_NODELAY", 1),
        (socket.SOL_SOCKET, "SO_KEEPALIVE", 1),
        (socket.IPPROTO_TCP, "TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        (socket.IPPROTO_TCP, "TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        (socket.IPPROTO_TCP, "TCP_KEEPCNT", KEEPALIVE_COUNT),
        (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        option = getattr(socket, name, None)
        if option is None:
            continue
        try:
            conn.setsockopt(level, option, value)
        except OSError:  # a network stack without it (gVisor lacks some): the defaults stay
            pass


def _read(conn, n, deadline):
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        conn.settimeout(left)
        try:
            chunk = conn.recv(n - len(buf))
        except OSError:  # socket.timeout included
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


# What an authenticated connection is for: requests (the host's channel), or a tunnel to a port.
CHANNEL = "channel"


def authenticate(conn, token):
    """What the connection is for, once its first frame is `{"op":"auth","token":...}` on request
    id 0, kind J, at most MAX_AUTH_PAYLOAD bytes, within AUTH_TIMEOUT_S, with the token (`token`:
    bytes): CHANNEL, or the port (an int from 1 to 65535) the frame's `tunnel` names. None for
    anything else, a `tunnel` that is no such port included; nothing else of the frame is looked
    at before the token matched."""
    deadline = time.monotonic() + AUTH_TIMEOUT_S
    header = _read(conn, 9, deadline)
    if header is None:
        return None
    length, rid, kind = struct.unpack(">IIB", header)
    if rid != 0 or kind != 0x4A or not 5 < length <= 5 + MAX_AUTH_PAYLOAD:
        return None
    payload = _read(conn, length - 5, deadline)
    if payload is None:
        return None
    try:
        msg = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(msg, dict) or msg.get("op") != "auth" or not isinstance(msg.get("token"), str):
        return None
    if not hmac.compare_digest(msg["token"].encode("utf-8", "surrogatepass"), token):
        return None
    if "tunnel" not in msg:
        return CHANNEL
    port = msg["tunnel"]
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        return None
    return port
