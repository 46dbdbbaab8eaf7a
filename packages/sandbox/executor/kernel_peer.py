"""A kernel's end of the control channel (kernel_channel.py is the executor's end).

A kernel connects to the executor's abstract socket when it is ready for a cell, reads the cell
as one JSON line, answers with JSON lines on the same connection, and connects again for the next
cell. Shared by the Python and bash kernels; it imports only what it needs, when it needs it, so
that a kernel starts fast. See docs/executor-protocol.md, "Executor ↔ kernel".
"""

import json
import os

_PASSCRED = os.environ.get("CODEBOX_KERNEL_AUTH") == "passcred"


def connect():
    """A new connection to the executor, made when the kernel is ready for the next cell; None
    when the executor is gone. Close-on-exec, like every socket Python makes."""
    import socket
    import struct

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        if _PASSCRED:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        conn.connect("\0" + os.environ["CODEBOX_KERNEL_CHANNEL"])
        if _PASSCRED:
            # the peer is checked when the executor takes this connection (read_request)
            return conn
        peer = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
    except OSError:
        conn.close()
        return None
    if peer != os.getppid():  # only the executor that started this kernel may send it cells
        conn.close()
        return None
    return conn


def _executor_asks(conn):
    """kernel_channel.py's handshake: True when the one-byte question on `conn` came from a thread of
    our parent, the executor (gVisor puts the sending thread's id in SCM_CREDENTIALS, and that
    thread waits for our answer, so it is alive while we look it up); then we answer with one byte."""
    import socket
    import struct

    ppid = os.getppid()
    try:
        _, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(12))
        creds = [d for (level, kind, d) in ancillary if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS]
        tid = struct.unpack("3i", creds[0][:12])[0] if creds else None
        if tid is None or not (tid == ppid or os.path.exists("/proc/%d/task/%d" % (ppid, tid))):
            return False
        conn.sendall(b"\n")
    except OSError:
        return False
    return True


def read_request(conn):
    """The cell (a dict) the executor sent on `conn`; None when it closed the connection first."""
    if _PASSCRED and not _executor_asks(conn):  # only the executor that started this kernel may send it cells
        return None
    buf = b""
    while b"\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
    return json.loads(buf.split(b"\n", 1)[0])


def send(fd, obj):
    """Writes `obj` as one JSON line to the connection `fd`, whole: SIGINT is blocked meanwhile, so
    that an interrupt cannot cut a message in half (the executor would lose the cell's `done`)."""
    import signal

    data = (json.dumps(obj) + "\n").encode()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
