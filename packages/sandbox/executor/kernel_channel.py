"""The control channel between the executor and one kernel: one unix connection per cell.

A kernel's cells are user code, and so is everything they start. An inherited pipe would let a
process a cell leaves behind read later cells and answer for them. Instead the executor listens
on an abstract unix socket of its own (the sandbox has its own network namespace, so the name is
the sandbox's; nobody else can bind it while the executor lives) and accepts a connection only
when SO_PEERCRED says its peer is the kernel's pid, which nobody can forge. A cell goes out on one
connection, its displays and `done` come back on it, and the executor closes it when the cell
ends: a copy a forked child kept is dead by then, and the kernel's next connection is new.
Every fd here is close-on-exec. See docs/executor-protocol.md, "Executor ↔ kernel".

With CODEBOX_KERNEL_AUTH=passcred (the gVisor driver sets it: gVisor's SO_PEERCRED of 2022 answers
with the caller's own credentials), the peer's pid comes from a one-byte handshake instead: the
executor turns SO_PASSCRED on, sends "\n", and reads one byte back, whose SCM_CREDENTIALS the
kernel (Linux or gVisor's) fills in with the sender's real pid; a process cannot claim another's.
"""

import os
import secrets
import select
import socket
import struct
import subprocess
import time

_PEERCRED = struct.Struct("3i")
PASSCRED = os.environ.get("CODEBOX_KERNEL_AUTH") == "passcred"


def output_pair():
    """(read end, write end) fds for a child's stdout or stderr, close-on-exec: a pipe, or under
    CODEBOX_KERNEL_AUTH=passcred (gVisor) a one-way unix socket pair, since gVisor (2022) lets any
    process of the sandbox's uid reopen another's pipe through /proc/<pid>/fd, even a
    non-dumpable one's, and read what a later cell prints; a socket cannot be reopened there."""
    if not PASSCRED:
        return os.pipe()
    r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r.shutdown(socket.SHUT_WR)
    w.shutdown(socket.SHUT_RD)
    return r.detach(), w.detach()


def popen_captured(argv, **kwargs):
    """subprocess.Popen with stdout and stderr captured through output_pair(); `proc.stdout` and
    `proc.stderr` are unbuffered binary files, as with subprocess.PIPE."""
    if not PASSCRED:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    out_r, out_w = output_pair()
    err_r, err_w = output_pair()
    try:
        proc = subprocess.Popen(argv, stdout=out_w, stderr=err_w, **kwargs)
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    proc.stdout = open(out_r, "rb", buffering=0)
    proc.stderr = open(err_r, "rb", buffering=0)
    return proc


class Listener:
    """The executor's end: an abstract, close-on-exec listening socket for one kernel."""

    def __init__(self):
        self.name = "codebox-kernel-" + secrets.token_hex(12)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind("\0" + self.name)
        self.sock.listen(16)
        self.sock.setblocking(False)

    def accept(self, pid, deadline, stop):
        """The next connection from process `pid`, as a Connection; the kernel makes it once it
        is ready for a cell. Connections from any other process are closed unread. Returns None at
        the deadline or when `stop()` is true (the kernel died, the call was cancelled)."""
        while time.monotonic() < deadline and not stop():
            try:
                conn, _ = self.sock.accept()  # usually waiting already: the kernel connects as a cell ends
            except BlockingIOError:
                select.select([self.sock], [], [], max(0, min(deadline - time.monotonic(), 0.1)))
                continue
            conn.setblocking(True)
            peer = _peer_pid(conn, deadline)
            # gVisor puts the sending thread's id in SCM_CREDENTIALS: any thread of the kernel will do
            if peer == pid or (PASSCRED and peer is not None and os.path.exists("/proc/%d/task/%d" % (pid, peer))):
                return Connection(conn)
            conn.close()
        return None

    def close(self):
        self.sock.close()


def _peer_pid(conn, deadline):
    """The pid of the process at the other end of `conn`, or None when it cannot be told."""
    if not PASSCRED:
        return _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))[0]
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        conn.settimeout(max(0.001, min(deadline - time.monotonic(), 2.0)))
        conn.send(b"\n", socket.MSG_NOSIGNAL)
        _, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(_PEERCRED.size))
    except OSError:
        return None
    finally:
        conn.settimeout(None)
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= _PEERCRED.size:
            return _PEERCRED.unpack(data[: _PEERCRED.size])[0]
    return None


class Connection:
    """One cell's connection to the kernel."""

    def __init__(self, sock):
        self.sock = sock

    def fileno(self):
        return self.sock.fileno()

    def send(self, data):
        """Writes all of `data`; False when the kernel has gone (never raises SIGPIPE)."""
        view = memoryview(data)
        try:
            while view:
                view = view[self.sock.send(view, socket.MSG_NOSIGNAL):]
        except OSError:
            return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
