"""codebox executor: the one process the host talks to inside a sandbox.

It speaks the frame protocol of docs/executor-protocol.md, owns the kernels
(Python, Node, and Deno when the image has it), runs commands and background tasks, and does
every file operation here, under the session's uid and mount namespace, so the host never
resolves a sandbox path itself.

The host reaches it over stdin/stdout, or, with CODEBOX_CHANNEL_DIR, over a unix socket it
listens on in that directory (bound from the host), so that a new server can connect again after
the old one died: requests of a connection that ended are cancelled (a running cell is
interrupted, its kernel keeps its state) and their late frames dropped; background tasks go on.
A sandbox handed to a session (op `session`) then ends itself at the session's deadline, and at
its idle timeout counted from its last request, while no server is connected; one never handed
over (a pool sandbox) ends when its server goes.

With CODEBOX_LISTEN (a Kubernetes pod) it listens on a TCP address or unix socket instead, serves
up to 16 connections at once, each authenticated with CODEBOX_EXECUTOR_TOKEN first (listen.py),
and never ends because a connection closed: a pool pod waits to be handed over. A connection
authenticated as a tunnel leaves those 16 for the inbound relay, which pipes it to a port on the
pod's loopback (the host's way to a server the session runs there).
"""


def _make_undumpable():
    """First thing: code in the sandbox runs as this process's uid, so it could open
    /proc/<executor>/mem, fd/ and environ, write any frame to the host or rewrite the executor.
    A process that is not dumpable lets no one without CAP_SYS_PTRACE (nobody in the sandbox)
    open them. Children inherit it until they exec: the kernels and commands are user code."""
    import ctypes
    pr_set_dumpable = 4
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
        raise SystemExit("codebox executor: prctl(PR_SET_DUMPABLE, 0) failed: errno %d" % ctypes.get_errno())


_make_undumpable()

import base64  # noqa: E402  (after the prctl above, on purpose)
import errno  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402

from egress_relay import parse_proxy_url, start_relay  # noqa: E402
from inbound_relay import PortLimit, make_relay  # noqa: E402
from frame_json import MAX_JSON_FRAME, encode_json, utf8_size  # noqa: E402
from files import FileError, list_files, make_dir, move_path, open_for_read, remove_path, stat_path, write_file  # noqa: E402
from listen import CHANNEL, MAX_CONNECTIONS, StartError, apply_rlimits, authenticate, close_listener, open_listener, parse_listen, parse_rlimits, tune  # noqa: E402
from jobs import Capture, interrupt_tree, kill_tree, tree_snapshot  # noqa: E402
from kernel_channel import Listener, output_pair, popen_captured  # noqa: E402
from terminal import TERM, SizeError, check_size, open_pty, read_master, resize, take_terminal  # noqa: E402
from watch import Watcher  # noqa: E402

WORKSPACE = os.environ.get("CODEBOX_WORKSPACE", "/workspace")
HERE = os.path.dirname(os.path.abspath(__file__))
NODE = os.environ.get("CODEBOX_NODE", "node")
PYTHON = os.environ.get("CODEBOX_PYTHON", sys.executable)
# Empty when the sandbox has no Deno (the fake driver); the image build puts it here when it can.
DENO = os.environ.get("CODEBOX_DENO", "/usr/local/bin/deno")
# matplotlib's font cache as the image build made it (image/build.ts).
MPL_CACHE = "/usr/share/codebox/matplotlib"
CHUNK = 256 * 1024
# How long a cancelled cell has to end after its interrupt (SIGINT) before its kernel is killed.
INTERRUPT_GRACE_S = 2.0
# Background tasks (processes): at most this many running, and this many ended ones kept for reading.
MAX_RUNNING_TASKS = 64
MAX_ENDED_TASKS = 64
# Streams of one task's output open at once (task.stream, task.start with stream).
MAX_STREAMS_PER_TASK = 8
# Directory watches open at once (files.watch).
MAX_WATCHES = 16
# Kernel contexts (context.create) a session may hold besides its default kernels: each is a
# kernel process of its own, with its own state, so they are counted against the session's memory.
MAX_CONTEXTS = 8
# Environment variables of one cell (exec `env`): at most this many, this many bytes in all.
MAX_CELL_ENV = 256
MAX_CELL_ENV_BYTES = 64 * 1024
# Largest input of one task.input; how long a process has to read it.
MAX_INPUT_BYTES = 1 << 20
# The longest line a kernel's control connection may send (a display with a large figure): past it
# the line is dropped unread, so a cell writing to its own connection cannot grow the executor.
MAX_CONTROL_LINE = 64 << 20
INPUT_TIMEOUT_S = 10.0
# Signals task.signal sends.
SIGNALS = ("SIGTERM", "SIGKILL", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGSTOP", "SIGCONT")
PIDS_LIMIT = "the session reached its process limit; end some of its processes and try again"

# The version of this protocol; a host that speaks another one ends the session with that reason.
PROTOCOL = 1
CHANNEL_DIR = os.environ.pop("CODEBOX_CHANNEL_DIR", "")
# Where the inbound relay binds its port sockets: the channel directory (bwrap), or a directory
# of its own the host reaches (gVisor: a host-backed mount, runsc's --host-uds=create); neither
# for the fake driver, whose host reaches the ports itself.
PORTS_DIR = os.environ.pop("CODEBOX_PORTS_DIR", "") or CHANNEL_DIR
# Listen mode (listen.py): popped here, so no kernel, command or task inherits the token.
LISTEN = os.environ.pop("CODEBOX_LISTEN", "")
EXECUTOR_TOKEN = os.environ.pop("CODEBOX_EXECUTOR_TOKEN", "")
RLIMITS = os.environ.pop("CODEBOX_RLIMITS", "")
# A pod's way to the model gateway (egress_relay.py): its proxy URL with the pod's credentials,
# popped too (the pod's HTTP_PROXY carries the same, no more).
GATEWAY_PROXY = os.environ.pop("CODEBOX_GATEWAY_PROXY", "")

# The protocol owns fd 0 and fd 1 (on stdio); nothing else may write to fd 1.
_stdin = os.fdopen(os.dup(0), "rb", buffering=0)
_stdout_fd = os.dup(1)
devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(devnull, 0)
os.dup2(2, 1)


class _Writer:
    """One connection's frame writer: one frame at a time, and none once it is closed."""

    def __init__(self, write):
        self.lock = threading.Lock()
        self.write = write

    def send(self, frame):
        with self.lock:
            if self.write is None:
                return
            try:
                self.write(frame)
            except OSError:  # the host went away: its reader sees it and detaches
                self.write = None

    def close(self):
        with self.lock:
            self.write = None


class Link:
    """The hosts' open connections, each with its generation (each new connection gets the next):
    a request's frames go only to the connection that sent it, and once that connection ends they
    are dropped, never sent to another host. Frames of no request (gen None) go to every one."""

    def __init__(self):
        self.lock = threading.Lock()
        self.gen = 0
        self.writers = {}

    def attach(self, write):
        with self.lock:
            self.gen += 1
            self.writers[self.gen] = _Writer(write)
            return self.gen

    def detach(self, gen):
        with self.lock:
            writer = self.writers.pop(gen, None)
        if writer is not None:
            writer.close()  # after a frame being written: none goes out once this returns

    def send(self, rid, kind, payload, gen):
        frame = struct.pack(">IIB", 5 + len(payload), rid, kind) + payload
        with self.lock:
            writers = list(self.writers.values()) if gen is None else [self.writers.get(gen)]
        for writer in writers:
            if writer is not None:
                writer.send(frame)


_link = Link()


def _fd_writer(fd):
    def write(data):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    return write


def send(rid, kind, payload=b"", gen=None):
    _link.send(rid, kind, payload, gen)


def send_json(rid, obj, gen=None):
    send(rid, 0x4A, encode_json(obj), gen)


def read_exact(reader, n):
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = reader(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class Request:
    def __init__(self, rid, msg, gen):
        self.rid = rid
        self.msg = msg
        self.gen = gen
        self.cancelled = threading.Event()
        self.inbound = queue.Queue()

    def event(self, obj):
        send_json(self.rid, obj, self.gen)

    def done(self, **fields):
        send_json(self.rid, dict(fields, ev="done"), self.gen)

    def error(self, code, message):
        send_json(self.rid, {"ev": "error", "code": code, "message": message}, self.gen)

    def cancel(self):
        self.cancelled.set()
        self.inbound.put(None)


class Kernel:
    """One kernel process: fd 1/2 are its output pipes; its control channel is one unix
    connection per cell (kernel_channel.py), which nothing the kernel starts can inherit or forge."""

    def __init__(self, argv, env=None, cwd=None):
        self.argv = argv
        self.env = env
        self.cwd = cwd or WORKSPACE
        # Cells run since this kernel (re)started: a notebook's execution count.
        self.executions = 0
        self.proc = None
        self.conn = None
        self.listener = None
        self.lock = threading.Lock()
        self.next_id = 0

    def start(self):
        if self.listener is None:
            self.listener = Listener()
        out_r, out_w = output_pair()
        err_r, err_w = output_pair()
        env = dict(self.env if self.env is not None else os.environ, CODEBOX_KERNEL_CHANNEL=self.listener.name)
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
            start_new_session=True,
        )
        for fd in (out_w, err_w):
            os.close(fd)
        self.executions = 0
        self.out_r, self.err_r = out_r, err_r
        if not self._connect(time.monotonic() + 30, lambda: False):
            code = self.proc.poll()
            self.kill()
            raise RuntimeError("kernel did not start (exit status %r)" % (code,))

    def _connect(self, deadline, cancelled):
        """Takes the kernel's connection for the next cell; False if it did not come."""
        proc = self.proc
        self.conn = self.listener.accept(proc.pid, deadline, lambda: cancelled() or proc.poll() is not None)
        self.ctl_buf = bytearray()
        self.ctl_skipping = False
        return self.conn is not None

    def _close_channel(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc is None:
            return
        kill_tree(self.proc.pid)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._close_channel()
        for fd in (self.out_r, self.err_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.proc = None

    def kill_running(self):
        """Ends the kernel's process: at once when no cell runs; while one runs, its tree is killed
        and the cell ends as a kernel that died (run() clears up after it)."""
        if self.lock.acquire(blocking=False):
            try:
                self.kill()
            finally:
                self.lock.release()
            return
        proc = self.proc
        if proc is not None:
            kill_tree(proc.pid)

    def run(self, req):
        msg = req.msg
        started = time.monotonic()
        deadline = started + msg.get("timeoutMs", 300000) / 1000.0
        if req.cancelled.is_set():
            # Cancelled while it waited for the kernel: nothing of it ran, and the kernel is untouched.
            req.done(exitCode=130, cancelled=True, interrupted=True, timedOut=False, killed=False, truncated=False,
                     durationMs=round((time.monotonic() - started) * 1000, 3))
            return
        if msg.get("clearContext") and self.proc is not None:
            self.kill()
        if not self.alive():
            if self.proc is not None:
                self.kill()
            self.start()
        self.next_id += 1
        cell = self.next_id
        if "preload" in msg:
            ask = {"id": cell, "preload": msg["preload"]}
        else:
            self.executions += 1
            ask = {"id": cell, "code": msg["code"], "language": msg["language"]}
            if msg.get("env"):
                ask["env"] = msg["env"]
            if msg.get("errorToStderr") is False:
                ask["errorToStderr"] = False
            if msg.get("charts") is True:
                ask["charts"] = True
        line = json.dumps(ask) + "\n"
        cap = Capture(req, msg.get("outputBytes", 1 << 20))
        interrupted = ignored = False
        if self.conn is None and not self._connect(deadline, req.cancelled.is_set):
            outcome = "cancelled" if req.cancelled.is_set() else "timeout" if time.monotonic() >= deadline else "eof"
            # Cancelled before the kernel took the cell: the cell never ran, the kernel lives on.
            interrupted = outcome == "cancelled" and self.alive()
        else:
            spared = tree_snapshot(self.proc.pid)
            self.conn.send(line.encode("utf-8", "surrogatepass"))
            fds = {self.out_r: "stdout", self.err_r: "stderr"}
            on_control = self._control_lines(cell, req, cap)
            try:
                outcome = cap.pump(fds, deadline, req.cancelled, control_fd=self.conn.fileno(), on_control=on_control)
                if outcome == "cancelled":
                    # Ctrl-C: the cell ends with KeyboardInterrupt (an abandoned await in JavaScript) and
                    # the kernel keeps its state; a cell that does not end within the grace is killed below.
                    # A second Ctrl-C halfway through the grace, as a user presses it again: a first
                    # one can arrive while the kernel is between states and be lost.
                    grace = time.monotonic() + INTERRUPT_GRACE_S
                    after = "timeout"
                    for until in (time.monotonic() + INTERRUPT_GRACE_S / 2, grace):
                        interrupt_tree(self.proc.pid, spared)
                        after = cap.pump(fds, until, threading.Event(), control_fd=self.conn.fileno(), on_control=on_control)
                        if after != "timeout":
                            break
                    interrupted = after == "done"
                    ignored = after == "timeout"
                    outcome = "done" if interrupted else "cancelled"
            finally:
                # The cell is over: whoever still holds this connection (a child it forked) holds a dead one.
                self._close_channel()
        result = {"durationMs": round((time.monotonic() - started) * 1000, 3), "truncated": cap.truncated}
        if "preload" not in msg:
            result["executionCount"] = self.executions
        if interrupted:
            result.update(cancelled=True, interrupted=True, timedOut=False, killed=False)
        if outcome == "done":
            cap.drain({self.out_r: "stdout", self.err_r: "stderr"})
            d = self._done
            status = d.get("exitCode")  # a SystemExit's status
            valid = isinstance(status, int) and not isinstance(status, bool) and 0 < status < 256
            # An interrupted cell ends as a program ended by Ctrl-C does: 128 + SIGINT.
            result["exitCode"] = 130 if interrupted else 0 if d.get("ok") else status if valid else 1
            if not d.get("ok"):
                result["error"] = d.get("error")
            if "preload" in msg and isinstance(d.get("preload"), dict):
                result["preload"] = d["preload"]
                for f in d["preload"].get("failed") or []:
                    # The sandbox's diagnostics (its stderr) keep what the session was handed over without.
                    print("codebox: preload of %s failed: %s" % (f.get("module"), f.get("error")), file=sys.stderr)
        elif interrupted:
            cap.drain_closed()
            result["exitCode"] = 130
        else:
            # Timed out, cancelled (and the interrupt ignored), or the kernel died (e.g. OOM): its state is gone.
            code = self.proc.poll() if self.proc else None
            self.kill()
            cap.drain_closed()
            result["exitCode"] = 137 if outcome != "eof" else (128 - code if code and code < 0 else (code or 1))
            result["timedOut"] = outcome == "timeout"
            result["cancelled"] = outcome == "cancelled"
            result["killed"] = outcome == "eof"
            if ignored:
                result["ignoredInterrupt"] = True
            if outcome == "eof" and code is not None and code < 0:
                result["signal"] = signal.Signals(-code).name
        req.done(**result)

    @staticmethod
    def _display(req, cap, m):
        """Sends a display, counted against the call's output limit like stdout and stderr."""
        data = m.get("data")
        if not isinstance(data, dict):
            return
        size = sum(len(str(k)) + utf8_size(v) for k, v in data.items())
        if size > cap.limit - cap.seen:
            cap.truncated = True
            cap.seen = cap.limit
            return
        cap.seen += size
        if size > MAX_JSON_FRAME - 4096:
            # Within the limit but too large for one frame (a huge figure): its text only.
            cap.truncated = True
            text = data.get("text/plain")
            data = {"text/plain": text[:65536]} if isinstance(text, str) else {}
        req.event({"ev": "display", "data": data, "executeResult": bool(m.get("executeResult"))})

    def _control_lines(self, cell, req, cap):
        def on_line(line):
            """True once the cell's `done` came."""
            try:
                m = json.loads(line)
            except (ValueError, RecursionError):
                return False
            if not isinstance(m, dict) or m.get("id") != cell:
                return False
            if m.get("type") == "display":
                self._display(req, cap, m)
            elif m.get("type") == "done":
                self._done = m
                return True
            return False

        def on_chunk(chunk):
            # The buffer holds the start of one line (a bytearray: appending is not a copy of it);
            # a line past MAX_CONTROL_LINE is dropped unread up to its end (ctl_skipping).
            while chunk:
                nl = chunk.find(b"\n")
                head = chunk if nl < 0 else chunk[:nl]
                chunk = b"" if nl < 0 else chunk[nl + 1:]
                if not self.ctl_skipping and len(self.ctl_buf) + len(head) > MAX_CONTROL_LINE:
                    self.ctl_buf = bytearray()
                    self.ctl_skipping = True
                    cap.truncated = True
                if not self.ctl_skipping:
                    self.ctl_buf += head
                if nl < 0:
                    return False
                skipped, self.ctl_skipping = self.ctl_skipping, False
                line, self.ctl_buf = bytes(self.ctl_buf), bytearray()
                if not skipped and on_line(line):
                    return True
            return False

        return on_chunk


def _where(e):
    """Where in the executor's own code `e` was raised: `file:line in function`, for the message of an
    executor fault (SandboxFailure), so that a rare one can be traced from the error alone."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "an unknown place"
    code = tb.tb_frame.f_code
    return "%s:%d in %s" % (os.path.basename(code.co_filename), tb.tb_lineno, code.co_name)


def _is_shell_name(name):
    """Whether `name` can be a shell variable: a bash cell's `env` is exported in the shell."""
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None


def _valid_cell_env(env):
    """Whether `env` (exec's per-cell variables) maps few enough plain names to strings."""
    if not isinstance(env, dict) or len(env) > MAX_CELL_ENV:
        return False
    size = 0
    for k, v in env.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k or "=" in k or "\0" in k or "\0" in v:
            return False
        size += utf8_size(k) + utf8_size(v)
    return size <= MAX_CELL_ENV_BYTES


class TaskOutput:
    """What a task printed on one stream, as a window over everything it printed: the last bytes,
    at most what the task's budget leaves, and `start`, the offset of the first byte kept (all
    bytes before it were dropped). Offsets count every byte the stream ever carried."""

    def __init__(self):
        self.buf = bytearray()
        self.start = 0

    @property
    def end(self):
        return self.start + len(self.buf)

    def drop(self, n):
        n = min(n, len(self.buf))
        del self.buf[:n]
        self.start += n
        return n

    def read(self, offset, max_bytes, final):
        """(text, next offset, bytes dropped before it) from `offset` on; a multi-byte character
        cut at the end waits for the next read while the stream may still grow."""
        begin = max(offset, self.start)
        dropped = begin - offset if offset < begin else 0
        stop = min(self.end, begin + max_bytes)
        chunk = bytes(self.buf[begin - self.start:stop - self.start])
        if not final or stop < self.end:
            chunk = chunk[:_utf8_cut(chunk)]
        return chunk.decode("utf-8", "replace"), begin + len(chunk), dropped


def _utf8_cut(chunk):
    """Length of `chunk` without a trailing incomplete UTF-8 character."""
    for back in range(1, min(4, len(chunk)) + 1):
        b = chunk[-back]
        if b & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for its lead
        need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4 if b & 0xF8 == 0xF0 else 1
        return len(chunk) - back if need > back else len(chunk)
    return len(chunk)


class Task:
    """A background process: `sh -c command`, or a program with arguments (`argv`), run until it
    ends or is stopped, however long. Its output is kept as the last `output_bytes` of stdout and
    stderr together (older bytes are dropped, counted, and `truncated` says so), readable whole
    (task.get), from offsets on (task.get with offsets), or streamed as it comes (task.stream, and
    task.start with `stream`). With `stdin` its stdin is a pipe the host writes to (task.input)
    and closes (task.closeStdin); without, /dev/null. With `pty` ((cols, rows)) it runs in a
    terminal (terminal.py): its output is what the terminal shows, kept and streamed as stdout,
    task.input writes to the terminal and task.resize sizes it. Signals go to its process group."""

    def __init__(self, task_id, argv, output_bytes, env=None, cwd=None, stdin=False, tag=None, command=None, pty=None):
        self.id = task_id
        self.status = "submitted"
        self.out = {"stdout": TaskOutput(), "stderr": TaskOutput()}
        self.lock = threading.Lock()
        self.truncated = False
        self.exit_code = None
        self.signal = None
        # Set, under the lock, once every byte of output is kept and the exit status known.
        self.finished = False
        self.limit = output_bytes
        self.argv = argv
        self.command = command
        self.env = env or {}
        self.cwd = cwd or WORKSPACE
        self.tag = tag
        self.subscribers = set()
        self.stdin_fd = None
        self.stdin_lock = threading.Lock()
        self.has_stdin = bool(stdin)
        # The terminal's master end (None without one) and its size; under stdin_lock.
        self.master = None
        self.pty = list(pty) if pty else None
        if pty:
            self._start_in_terminal(argv, env)
        else:
            self._start_piped(argv, env, stdin)
        self.pid = self.proc.pid
        self.status = "working"
        threading.Thread(target=self._collect, daemon=True).start()

    def _start_piped(self, argv, env, stdin):
        child_stdin = subprocess.DEVNULL
        if stdin:
            # A pipe (a one-way socket pair under passcred, like the output: gVisor lets a process of
            # the uid reopen a pipe through /proc); the executor's end is close-on-exec and non-blocking.
            child_stdin, self.stdin_fd = output_pair()
            os.set_blocking(self.stdin_fd, False)
        try:
            self.proc = popen_captured(
                argv, cwd=self.cwd, stdin=child_stdin, start_new_session=True,
                env=dict(os.environ, **env) if env else None,
            )
        except BaseException:
            if self.stdin_fd is not None:
                os.close(self.stdin_fd)
            raise
        finally:
            if stdin:
                os.close(child_stdin)

    def _start_in_terminal(self, argv, env):
        try:
            master, slave = open_pty(*self.pty)
        except OSError as e:
            # Out of fds, or out of ptys (bwrap: the host's pool that every sandbox's devpts shares).
            raise FileError("LimitExceeded", "cannot open a terminal: %s; end some of the session's terminals or close files" % (e.strerror or e))
        try:
            self.proc = subprocess.Popen(
                argv, cwd=self.cwd, stdin=slave, stdout=slave, stderr=slave,
                start_new_session=True, preexec_fn=take_terminal,
                env=dict(os.environ, **dict({"TERM": TERM}, **env)),
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            # Only the process (and what it starts) holds the slave: when they are gone the master reads EIO.
            os.close(slave)
        self.master = master

    @property
    def running(self):
        return not self.finished

    def _keep(self, name, chunk):
        with self.lock:
            stream, other = self.out[name], self.out["stderr" if name == "stdout" else "stdout"]
            offset = stream.end
            stream.buf.extend(chunk)
            over = len(stream.buf) + len(other.buf) - self.limit
            if over > 0:
                self.truncated = True
                over -= stream.drop(over)
                other.drop(over)
            for sub in self.subscribers:
                sub.push(name, offset, chunk)

    def _exited(self):
        """Whether the process has ended, without reaping it: its pid (and process group) stays
        its own until _collect reaps it under the lock, so a signal never reaches a later process."""
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def _collect(self):
        import selectors
        sel = selectors.DefaultSelector()
        if self.master is not None:
            # A terminal has one stream: what it shows, kept as stdout.
            sel.register(self.master, selectors.EVENT_READ, "stdout")
            read = read_master
        else:
            sel.register(self.proc.stdout, selectors.EVENT_READ, "stdout")
            sel.register(self.proc.stderr, selectors.EVENT_READ, "stderr")
            read = os.read
        open_pipes = len(sel.get_map())
        while open_pipes:
            for key, _ in sel.select(timeout=0.5):
                try:
                    chunk = read(key.fd, CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
                    continue
                self._keep(key.data, chunk)
            if self._exited() and not sel.select(timeout=0.05):
                break
        sel.close()
        try:
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        with self.lock:
            code = self.proc.wait()
            self.exit_code = code if code >= 0 else 128 - code
            if code < 0:
                try:
                    self.signal = signal.Signals(-code).name
                except ValueError:
                    self.signal = "SIG%d" % -code
            if self.status != "canceled":
                self.status = "completed" if code == 0 else "failed"
            self.finished = True
            for sub in self.subscribers:
                sub.wake.set()
        if self.master is None:
            self.proc.stdout.close()
            self.proc.stderr.close()
        self.close_stdin()
        with self.stdin_lock:
            if self.master is not None:
                # A process left holding the slave reads EIO (and got SIGHUP when the task's process ended).
                os.close(self.master)
                self.master = None

    def stop(self):
        with self.lock:
            if not self.finished and self.proc.returncode is None:
                self.status = "canceled"
                kill_tree(self.pid)

    def send_signal(self, name):
        """Sends signal `name` to the process's group (SIGKILL: to its whole tree, as stop does)."""
        with self.lock:
            if self.finished or self.proc.returncode is not None:
                raise FileError("Conflict", "task %s has ended (%s); there is nothing to signal" % (self.id, self.status))
            if name == "SIGKILL":
                kill_tree(self.pid)
                return
            try:
                os.killpg(self.pid, getattr(signal, name))
            except ProcessLookupError:
                pass

    def write_input(self, data, target=None, timeout_s=INPUT_TIMEOUT_S):
        """Writes `data` to the process's stdin or terminal, waiting at most `timeout_s` for it to
        read. `target` ("stdin" or "pty"; None: whichever it has) says which the caller means."""
        # A reader that is gone is EPIPE for this thread, never a SIGPIPE that ends the executor.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
        with self.stdin_lock:
            if target == "pty" and self.pty is None:
                raise FileError("Conflict", "task %s was started without a terminal (pty); send its input as stdin" % self.id)
            if target == "stdin" and self.pty is not None:
                raise FileError("Conflict", "task %s runs in a terminal (pty): send its input to the terminal, not to stdin" % self.id)
            fd = self.master if self.pty is not None else self.stdin_fd
            if fd is None:
                why = ("has ended; its terminal is closed" if self.pty is not None else
                       "has its stdin closed" if self.has_stdin else "was started without stdin")
                raise FileError("Conflict", "task %s %s" % (self.id, why))
            what = "terminal's input" if self.pty is not None else "stdin"
            view = memoryview(data)
            deadline = time.monotonic() + timeout_s
            while view:
                try:
                    view = view[os.write(fd, view[:CHUNK]):]
                except BlockingIOError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise FileError("Timeout", "task %s did not read its %s within %g s; %d of %d bytes were written" % (
                            self.id, what, timeout_s, len(data) - len(view), len(data)))
                    select.select([], [fd], [], min(left, 0.5))
                except (BrokenPipeError, ConnectionResetError):
                    raise FileError("Conflict", "task %s no longer reads its stdin (it closed it or ended)" % self.id)
                except OSError as e:
                    if e.errno != errno.EIO:
                        raise
                    raise FileError("Conflict", "task %s no longer reads its terminal (it ended)" % self.id)

    def resize(self, cols, rows):
        """Sets the size of the task's terminal (its foreground processes get SIGWINCH)."""
        with self.stdin_lock:
            if self.pty is None:
                raise FileError("Conflict", "task %s was started without a terminal (pty); there is nothing to resize" % self.id)
            if self.master is None:
                raise FileError("Conflict", "task %s has ended; its terminal is closed" % self.id)
            resize(self.master, cols, rows, self.pid)
            self.pty = [cols, rows]

    def close_stdin(self):
        with self.stdin_lock:
            if self.stdin_fd is not None:
                os.close(self.stdin_fd)
                self.stdin_fd = None

    def info(self):
        """What task.list shows of the task."""
        cut = lambda s: s if len(s) <= 4096 else s[:4096] + "…"  # noqa: E731
        return {
            "taskId": self.id, "pid": self.pid, "status": self.status, "exitCode": self.exit_code,
            "signal": self.signal, "tag": self.tag, "cwd": self.cwd,
            "command": cut(self.command) if self.command is not None else None,
            "argv": [cut(a) for a in self.argv[:1024]],
            "env": {k: cut(v) for k, v in self.env.items()}, "stdin": self.stdin_fd is not None,
            "pty": {"cols": self.pty[0], "rows": self.pty[1]} if self.pty else None,
        }

    def end_view(self):
        return {"taskId": self.id, "pid": self.pid, "status": self.status, "exitCode": self.exit_code,
                "signal": self.signal, "truncated": self.truncated}

    def view(self):
        with self.lock:
            return {
                "taskId": self.id, "status": self.status, "exitCode": self.exit_code,
                "stdout": self.out["stdout"].buf.decode("utf-8", "replace"),
                "stderr": self.out["stderr"].buf.decode("utf-8", "replace"),
                "truncated": self.truncated,
            }

    def read(self, offsets, max_bytes):
        """The output from the given offsets on, at most `max_bytes` per stream, with the next
        offsets and how many bytes after the given offsets were dropped before being read."""
        with self.lock:
            view = {"taskId": self.id, "status": self.status, "exitCode": self.exit_code, "truncated": self.truncated}
            final = self.finished
            for name, out in self.out.items():
                text, after, dropped = out.read(offsets[name], max_bytes, final)
                view[name] = text
                view[name + "Offset"] = after
                view[name + "Dropped"] = dropped
                view[name + "End"] = out.end
        return view

    def _catch_up(self, cursor, items):
        """Under the lock: what is kept from `cursor` on, and what was dropped before it; advances `cursor`."""
        for name, out in self.out.items():
            if cursor[name] < out.start:
                items.append(("dropped", name, out.start - cursor[name]))
                cursor[name] = out.start
            if cursor[name] < out.end:
                items.append(("data", name, cursor[name], bytes(out.buf[cursor[name] - out.start:])))
                cursor[name] = out.end

    def stream(self, req, offsets):
        """Sends `task.started`, then streams the output from `offsets` on (None: from now), as it
        comes, in the order it came, until the task has ended and all of it is sent (done with the
        end), or the request is cancelled (done with `detached`: the task runs on)."""
        sub = Subscriber(max(self.limit, 1 << 20))
        sub.cancelled = req.cancelled
        items = []
        with self.lock:
            # A stream its host cancelled is let go of within half a second; it no longer counts,
            # so a client that reconnects at once is not refused (the cancel comes first on the channel).
            if sum(1 for s in self.subscribers if not s.cancelled.is_set()) >= MAX_STREAMS_PER_TASK:
                raise FileError("LimitExceeded", "task %s already has %d streams open; close one first" % (self.id, MAX_STREAMS_PER_TASK))
            cursor = {name: out.end if offsets.get(name) is None else offsets[name] for name, out in self.out.items()}
            self._catch_up(cursor, items)
            self.subscribers.add(sub)
            ended = self.finished
        try:
            req.event({"ev": "task.started", "taskId": self.id, "pid": self.pid, "pty": self.pty is not None})
            while True:
                self._send_items(req, items)
                if ended:
                    break
                if req.cancelled.is_set():
                    req.done(detached=True, **self.end_view())
                    return
                sub.wake.wait(0.5)
                items = []
                with self.lock:
                    sub.wake.clear()
                    if sub.overflow:
                        # The host read slower than the process wrote: take up from what is kept.
                        sub.overflow = False
                        sub.queue.clear()
                        self._catch_up(cursor, items)
                    else:
                        sub.take(cursor, items)
                    ended = self.finished
        finally:
            with self.lock:
                self.subscribers.discard(sub)
        req.done(**self.end_view())

    @staticmethod
    def _send_items(req, items):
        for item in items:
            if item[0] == "dropped":
                req.event({"ev": "task.dropped", "stream": item[1], "bytes": item[2]})
                continue
            _, name, offset, data = item
            for i in range(0, len(data), CHUNK):
                req.event({"ev": "task.data", "stream": name, "offset": offset + i,
                           "data": base64.b64encode(data[i:i + CHUNK]).decode("ascii")})


class Subscriber:
    """A stream's queue of a task's output: chunks as the task printed them, at most `limit` bytes
    waiting; past that it overflows and the stream takes up again from what the task kept."""

    def __init__(self, limit):
        self.limit = limit
        self.queue = []
        self.bytes = 0
        self.overflow = False
        self.wake = threading.Event()
        # The stream's request's cancel flag (set by the host when it lets go).
        self.cancelled = threading.Event()

    def push(self, name, offset, chunk):
        if not self.overflow:
            if self.bytes + len(chunk) > self.limit:
                self.overflow = True
                self.queue = []
                self.bytes = 0
            else:
                self.queue.append((name, offset, chunk))
                self.bytes += len(chunk)
        self.wake.set()

    def take(self, cursor, items):
        """Moves the queued chunks to `items`, less what `cursor` says was sent already."""
        for name, offset, chunk in self.queue:
            end = offset + len(chunk)
            if end <= cursor[name]:
                continue
            if offset < cursor[name]:
                chunk = chunk[cursor[name] - offset:]
                offset = cursor[name]
            elif offset > cursor[name]:
                items.append(("dropped", name, offset - cursor[name]))
            items.append(("data", name, offset, chunk))
            cursor[name] = end
        self.queue = []
        self.bytes = 0


class Executor:
    def __init__(self):
        self.requests = {}
        self.kernels = {
            "python": Kernel([PYTHON, "-s", os.path.join(HERE, "kernel_python.py")]),
            "node": Kernel([NODE, "--disable-warning=ExperimentalWarning", os.path.join(HERE, "kernel_node.mjs")]),
            "bash": Kernel([PYTHON, "-s", os.path.join(HERE, "kernel_bash.py")]),
        }
        if DENO and os.access(DENO, os.X_OK):
            self.kernels["deno"] = deno_kernel()
        self.runtimes = ["python", "nodejs"] + (["deno"] if "deno" in self.kernels else [])
        # Contexts by name (op context.create): {"kernel", "family", "language", "runtime"}.
        self.contexts = {}
        self.contexts_lock = threading.Lock()
        self.tasks = {}
        self.tasks_lock = threading.Lock()
        self.task_seq = 0
        self.watches = []
        self.watches_lock = threading.Lock()
        # The inbound relay, made on the first `port.open` or tunnel.
        self.inbound = None
        self.inbound_lock = threading.Lock()
        # The session this sandbox serves (op `session`): its idle timeout and deadline; None in the pool.
        self.session = None
        self.active = 0
        self.active_lock = threading.Lock()
        self.last_activity = time.monotonic()
        # Listen mode: connections open (authenticated or not yet), and those serving a host.
        self.connections = 0
        self.hosts = 0
        self.connections_lock = threading.Lock()

    def serve(self, listen=None):
        # No kernel starts here: an idle lean session is the executor alone (~8 MiB less than with
        # a Python kernel waiting); the first Python cell, or the preload before hand-over, starts it.
        try:
            if listen is not None:
                self._serve_listen(*listen)
            elif not CHANNEL_DIR:
                # stdin/stdout: the host is the process that started this one; when it goes, so does this.
                self._serve_connection(_stdin.read, _fd_writer(_stdout_fd))
            else:
                self._serve_socket()
        finally:
            for kernel in list(self.kernels.values()) + [c["kernel"] for c in self.contexts.values()]:
                kernel.kill()

    def _serve_socket(self):
        path = os.path.join(CHANNEL_DIR, "executor.sock")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(4)
        listener.settimeout(1.0)
        while True:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                if self._should_end():
                    return
                continue
            conn.settimeout(None)
            self._serve_connection(conn.recv, conn.sendall, hangup=lambda: _hang_up(conn))
            conn.close()
            if self.session is None:
                return  # a pool sandbox: nobody will hand it over now

    def _serve_listen(self, family, address):
        """Listen mode: up to MAX_CONNECTIONS connections at once, each served on a thread of its
        own once it authenticated; the session's deadline and idle timeout end the executor only
        while no host is connected (a pool pod waits for its session whatever happens)."""
        listener, shown = open_listener(family, address)
        print("codebox executor: listening on %s" % shown, file=sys.stderr, flush=True)
        listener.settimeout(1.0)
        try:
            while not (self.hosts == 0 and self._should_end()):
                try:
                    conn, _ = listener.accept()
                except socket.timeout:
                    continue
                except OSError as e:
                    # Out of fds or memory for a moment (or the peer gave up first): try again shortly.
                    if e.errno not in (errno.ECONNABORTED, errno.EINTR):
                        time.sleep(0.2)
                    continue
                with self.connections_lock:
                    full = self.connections >= MAX_CONNECTIONS
                    if not full:
                        self.connections += 1
                if full:
                    conn.close()
                    continue
                try:
                    threading.Thread(target=self._serve_listened, args=(conn,), daemon=True).start()
                except RuntimeError:  # no thread to spare: the session is at its pids limit
                    self._drop_connection(conn)
        finally:
            close_listener(listener, family, address)

    def _serve_listened(self, conn):
        """One listened connection: nothing is sent before it authenticated; then served as a
        channel connection is, beside the others, or handed to the inbound relay as a tunnel."""
        handed = False
        try:
            tune(conn)
            purpose = authenticate(conn, EXECUTOR_TOKEN.encode("utf-8", "surrogatepass"))
            if purpose is None:
                return
            if purpose != CHANNEL:
                handed = True
                return self._tunnel(conn, purpose)
            conn.settimeout(None)
            with self.connections_lock:
                self.hosts += 1
            try:
                self._serve_connection(conn.recv, conn.sendall, hangup=lambda: _hang_up(conn))
            finally:
                with self.connections_lock:
                    self.hosts -= 1
        finally:
            if not handed:
                self._drop_connection(conn)

    def _tunnel(self, conn, port):
        """Hands an authenticated tunnel connection (now the relay's) to the inbound relay, which
        connects to 127.0.0.1:`port`, as any code of the session can, and answers with its status
        byte. Tunnels are bounded with the relay's own connections: the connection's slot among
        the MAX_CONNECTIONS is free again at once."""
        with self.connections_lock:
            self.connections -= 1
        try:
            self._inbound_relay().adopt(conn, port)
        except RuntimeError:  # no thread to spare for the relay: the session is at its pids limit
            pass  # adopt closed it

    def _inbound_relay(self):
        with self.inbound_lock:
            if self.inbound is None:
                self.inbound = make_relay(PORTS_DIR or None, on_activity=self._touch)
            return self.inbound

    def _drop_connection(self, conn):
        conn.close()
        with self.connections_lock:
            self.connections -= 1

    def _should_end(self):
        """While no host is connected: past the session's deadline, or idle for its idle timeout."""
        if self.session is None:
            return False
        now = time.time()
        if now * 1000 >= self.session["deadlineMs"]:
            return True
        return self.active == 0 and (time.monotonic() - self.last_activity) * 1000 >= self.session["idleTimeoutMs"]

    def _serve_connection(self, reader, write, hangup=None):
        gen = _link.attach(write)
        idle_ms = round((time.monotonic() - self.last_activity) * 1000)
        send_json(0, {"ev": "ready", "pid": os.getpid(), "runtimes": self.runtimes, "protocol": PROTOCOL,
                      "idleMs": idle_ms, "session": self.session is not None}, gen)
        try:
            while True:
                header = read_exact(reader, 9)
                if header is None:
                    break
                length, rid, kind = struct.unpack(">IIB", header)
                payload = read_exact(reader, length - 5) if length > 5 else b""
                if payload is None:
                    break
                if kind == 0x4A:
                    msg = json.loads(payload)
                    if msg.get("op") == "cancel":
                        target = self.requests.get((gen, msg.get("target")))
                        if target:
                            target.cancel()
                        continue
                    if msg.get("op") == "session":
                        self.session = {"idleTimeoutMs": float(msg["idleTimeoutMs"]), "deadlineMs": float(msg["deadlineMs"])}
                        send_json(rid, {"ev": "done"}, gen)
                        continue
                    req = Request(rid, msg, gen)
                    self.requests[(gen, rid)] = req
                    try:
                        threading.Thread(target=self._handle, args=(req,), daemon=True).start()
                    except RuntimeError:  # no thread to spare: the session is at its pids limit
                        self.requests.pop((gen, rid), None)
                        req.error("LimitExceeded", "cannot serve the request: " + PIDS_LIMIT)
                elif kind in (0x42, 0x45):
                    req = self.requests.get((gen, rid))
                    if req:
                        req.inbound.put(payload if kind == 0x42 else None)
        finally:
            if hangup is not None:
                hangup()  # a frame blocked on a host that stopped reading fails now, so detach does not wait for it
            _link.detach(gen)
            # The host that asked is gone: its requests end (a cell is interrupted, state kept).
            for key, req in list(self.requests.items()):
                if key[0] == gen:
                    req.cancel()

    def _handle(self, req):
        with self.active_lock:
            self.active += 1
            self.last_activity = time.monotonic()
        try:
            op = req.msg.get("op")
            handler = getattr(self, "op_" + str(op).replace(".", "_"), None)
            if handler is None:
                req.error("ValidationError", "unknown op %r" % op)
            else:
                handler(req)
        except FileError as e:
            req.error(e.code, str(e))
        except BlockingIOError:  # fork refused: the session is at its pids limit
            req.error("LimitExceeded", "cannot start a process: " + PIDS_LIMIT)
        except Exception as e:
            if isinstance(e, RuntimeError) and "can't start new thread" in str(e):
                req.error("LimitExceeded", "cannot start a thread: " + PIDS_LIMIT)
            else:
                req.error("SandboxFailure", "%s: %s (in the executor at %s)" % (type(e).__name__, e, _where(e)))
        finally:
            self.requests.pop((req.gen, req.rid), None)
            with self.active_lock:
                self.active -= 1
                self.last_activity = time.monotonic()

    def op_ping(self, req):
        req.done(pid=os.getpid())

    def _family(self, req):
        """The kernel family ("python", "bash", "node" or "deno") of a request's language and
        runtime; None after answering a ValidationError."""
        runtime = req.msg.get("runtime") or "nodejs"
        if req.msg.get("language") in ("python", "bash"):
            return req.msg["language"]
        if runtime in self.runtimes and runtime != "python":
            return "deno" if runtime == "deno" else "node"
        why = "is not in this sandbox's image" if runtime == "deno" else "cannot run %s" % req.msg.get("language")
        req.error("ValidationError", "runtime %s %s; use one of: %s" % (runtime, why, ", ".join(self.runtimes[1:])))
        return None

    def op_exec(self, req):
        env = req.msg.get("env")
        if env is not None and not _valid_cell_env(env):
            req.error("ValidationError", "env: must map at most %d names (without '=' or NUL) to strings without NUL, %d bytes in all" % (
                MAX_CELL_ENV, MAX_CELL_ENV_BYTES))
            return
        family = self._family(req)
        if family is None:
            return
        if family == "bash" and env is not None and not all(_is_shell_name(k) for k in env):
            req.error("ValidationError", "env: %s is not a shell variable name (letters, digits and _, not first a digit)" % (
                json.dumps(next(k for k in env if not _is_shell_name(k))[:64]),))
            return
        name = req.msg.get("context")
        if name is None:
            kernel = self.kernels[family]
        else:
            with self.contexts_lock:
                ctx = self.contexts.get(name) if isinstance(name, str) else None
            if ctx is None:
                raise FileError("NotFound", "no context %r in this session" % (name,))
            if ctx["family"] != family:
                req.error("ValidationError", "context %s runs %s, not %s" % (name, ctx["language"], req.msg.get("language")))
                return
            kernel = ctx["kernel"]
        with kernel.lock:
            kernel.run(req)

    def op_context_create(self, req):
        """A kernel of its own (state, working directory) for `language`, started by its first cell."""
        msg = req.msg
        name = msg.get("context")
        if not isinstance(name, str) or not 1 <= len(name) <= 64 or not name.replace("-", "").replace("_", "").isalnum():
            req.error("ValidationError", "context: must be 1 to 64 letters, digits, '-' or '_'")
            return
        if msg.get("language") not in ("python", "javascript", "typescript", "bash"):
            req.error("ValidationError", "language: must be python, javascript, typescript or bash, got %r" % (msg.get("language"),))
            return
        family = self._family(req)
        if family is None:
            return
        cwd = msg.get("cwd") or WORKSPACE
        if not isinstance(cwd, str) or "\0" in cwd:
            req.error("ValidationError", "cwd: must be a path, got %r" % (cwd,))
            return
        cwd = os.path.normpath(os.path.join(WORKSPACE, cwd))
        if not os.path.isdir(cwd):
            req.error("ValidationError", "cwd: %r is not a directory in the sandbox" % (cwd,))
            return
        template = self.kernels[family]
        with self.contexts_lock:
            if name in self.contexts:
                raise FileError("Conflict", "context %s exists already" % name)
            if len(self.contexts) >= MAX_CONTEXTS:
                raise FileError("LimitExceeded", "the session has %d contexts, the most it may; remove one first" % MAX_CONTEXTS)
            self.contexts[name] = {"kernel": Kernel(template.argv, template.env, cwd), "family": family,
                                   "language": msg["language"], "runtime": family if family in ("python", "bash") else msg.get("runtime") or "nodejs"}
        req.done(**self._context_view(name, self.contexts[name]))

    @staticmethod
    def _context_view(name, ctx):
        return {"context": name, "language": ctx["language"], "runtime": ctx["runtime"], "cwd": ctx["kernel"].cwd,
                "running": ctx["kernel"].alive(), "executionCount": ctx["kernel"].executions}

    def op_context_list(self, req):
        with self.contexts_lock:
            views = [self._context_view(name, ctx) for name, ctx in self.contexts.items()]
        req.done(contexts=views)

    def _kernel_named(self, req):
        """The kernel of a context (`context`) or a default kernel (`family`)."""
        name = req.msg.get("context")
        if name is not None:
            with self.contexts_lock:
                ctx = self.contexts.get(name) if isinstance(name, str) else None
            if ctx is None:
                raise FileError("NotFound", "no context %r in this session" % (name,))
            return ctx["kernel"]
        kernel = self.kernels.get(req.msg.get("family"))
        if kernel is None:
            raise FileError("NotFound", "no kernel %r in this session" % (req.msg.get("family"),))
        return kernel

    def op_context_restart(self, req):
        """Ends the kernel's process, and its state with it; the next cell starts a fresh one. A cell
        running in it now ends as killed."""
        kernel = self._kernel_named(req)
        kernel.kill_running()
        req.done()

    def op_context_remove(self, req):
        name = req.msg.get("context")
        with self.contexts_lock:
            ctx = self.contexts.pop(name, None) if isinstance(name, str) else None
        if ctx is None:
            raise FileError("NotFound", "no context %r in this session" % (name,))
        ctx["kernel"].kill_running()
        req.done()

    def op_preload(self, req):
        """Imports the interpreter's modules in the Python kernel (started if need be) before the
        session is handed over; a module that fails is reported in the result, never fatal."""
        modules = req.msg.get("modules")
        if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
            req.error("ValidationError", "modules must be a list of module names")
            return
        req.msg = {"preload": modules, "timeoutMs": req.msg.get("timeoutMs", 60000), "outputBytes": 64 * 1024}
        kernel = self.kernels["python"]
        with kernel.lock:
            kernel.run(req)

    def op_command(self, req):
        msg = req.msg
        started = time.monotonic()
        proc = popen_captured(
            ["/bin/sh", "-c", msg["command"]], cwd=WORKSPACE, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        cap = Capture(req, msg.get("outputBytes", 1 << 20))
        deadline = started + msg.get("timeoutMs", 300000) / 1000.0
        fds = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
        outcome = cap.pump(fds, deadline, req.cancelled, proc=proc)
        timed_out = outcome in ("timeout", "cancelled")
        if timed_out:
            kill_tree(proc.pid)
        code = proc.wait()
        cap.drain(fds)
        proc.stdout.close()
        proc.stderr.close()
        req.done(
            exitCode=code if code >= 0 else 128 - code, truncated=cap.truncated,
            timedOut=outcome == "timeout", cancelled=outcome == "cancelled",
            durationMs=round((time.monotonic() - started) * 1000, 3),
        )

    def op_task_start(self, req):
        """Starts `command` (sh -c) or `argv` (a program and its arguments) in the background.
        With `stream`, the request then streams its output (as task.stream) until it ends."""
        msg = req.msg
        env = msg.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            req.error("ValidationError", "env must map names to strings")
            return
        cwd = msg.get("cwd")
        if cwd is not None:
            if not isinstance(cwd, str) or "\0" in cwd:
                req.error("ValidationError", "cwd: must be a path, got %r" % (cwd,))
                return
            cwd = os.path.join(WORKSPACE, cwd)  # a relative cwd is in the workspace; an absolute one stays
            if not os.path.isdir(cwd):
                req.error("ValidationError", "cwd: %r is not a directory in the sandbox" % (cwd,))
                return
        command, argv = msg.get("command"), msg.get("argv")
        if argv is not None:
            if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and "\0" not in a for a in argv) or not argv[0]:
                req.error("ValidationError", "argv: must be a program and its arguments, strings without NUL")
                return
            command = None
        elif isinstance(command, str):
            argv = ["/bin/sh", "-c", command]
        else:
            req.error("ValidationError", "command: must be a string (or give argv)")
            return
        tag = msg.get("tag")
        if tag is not None and (not isinstance(tag, str) or len(tag) > 256):
            req.error("ValidationError", "tag: must be a string of at most 256 characters")
            return
        pty = msg.get("pty")
        if pty is not None:
            try:
                pty = check_size(pty)
            except SizeError as e:
                req.error("ValidationError", str(e))
                return
            if msg.get("stdin") is True:
                req.error("ValidationError", "stdin: a task with a terminal (pty) reads its input from the terminal; give pty or stdin, not both")
                return
        with self.tasks_lock:
            running = sum(1 for t in self.tasks.values() if t.running)
            if running >= MAX_RUNNING_TASKS:
                req.error("LimitExceeded", "the session runs %d background tasks, the most it may; stop one first" % running)
                return
            self.task_seq += 1
            task_id = "task-%d" % self.task_seq
            try:
                task = Task(task_id, argv, msg.get("outputBytes", 1 << 20), env, cwd, stdin=msg.get("stdin") is True, tag=tag,
                            command=command, pty=pty)
            except FileNotFoundError:
                req.error("ValidationError", "argv: %r was not found in the sandbox (PATH is searched)" % (argv[0],))
                return
            except PermissionError:
                req.error("ValidationError", "argv: %r cannot be run (permission denied)" % (argv[0],))
                return
            self.tasks[task_id] = task
            ended = [t for t in self.tasks.values() if not t.running]
            for old in ended[:max(0, len(ended) - MAX_ENDED_TASKS)]:
                del self.tasks[old.id]
        if msg.get("stream"):
            task.stream(req, {"stdout": 0, "stderr": 0})
            return
        req.done(taskId=task_id, pid=task.pid, status=task.status)

    def _task(self, req):
        """The task a request names: by `taskId`, `pid` (the running one, else the latest) or `tag` (likewise)."""
        msg = req.msg
        with self.tasks_lock:
            tasks = list(self.tasks.values())
        if msg.get("pid") is not None:
            key, want = "pid", msg["pid"]
            found = [t for t in tasks if t.pid == want]
        elif msg.get("tag") is not None:
            key, want = "tag", msg["tag"]
            found = [t for t in tasks if t.tag == want]
        else:
            key, want = "taskId", msg.get("taskId")
            found = [t for t in tasks if t.id == want]
        if not found:
            which = "%r" % (want,) if key == "taskId" else "with %s %r" % (key, want)
            raise FileError("NotFound", "no task %s in this session" % which)
        live = [t for t in found if t.running]
        return (live or found)[-1]

    def op_task_list(self, req):
        with self.tasks_lock:
            tasks = list(self.tasks.values())
        req.done(tasks=[t.info() for t in tasks if t.running or not req.msg.get("running")])

    def op_task_stream(self, req):
        """Streams a task's output from `stdoutOffset`/`stderrOffset` on (absent: from now)."""
        task = self._task(req)
        offsets = {}
        for name in ("stdout", "stderr"):
            v = req.msg.get(name + "Offset")
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                req.error("ValidationError", "%sOffset: must be a whole number from 0" % name)
                return
            offsets[name] = v
        task.stream(req, offsets)

    def op_task_input(self, req):
        task = self._task(req)
        try:
            data = base64.b64decode(req.msg.get("data") or "", validate=True)
        except (ValueError, TypeError):
            req.error("ValidationError", "data: must be base64")
            return
        if len(data) > MAX_INPUT_BYTES:
            req.error("LimitExceeded", "data: %d bytes, more than the %d one input may send" % (len(data), MAX_INPUT_BYTES))
            return
        target = req.msg.get("target")
        if target not in (None, "stdin", "pty"):
            req.error("ValidationError", "target: must be \"stdin\" or \"pty\", got %r" % (target,))
            return
        task.write_input(data, target)
        req.done(taskId=task.id, size=len(data))

    def op_task_resize(self, req):
        """Sets the size of a task's terminal (`size`: {cols, rows})."""
        try:
            cols, rows = check_size(req.msg.get("size"), "size")
        except SizeError as e:
            req.error("ValidationError", str(e))
            return
        task = self._task(req)
        task.resize(cols, rows)
        req.done(taskId=task.id, cols=cols, rows=rows)

    def op_task_closeStdin(self, req):
        task = self._task(req)
        if task.pty is not None:
            raise FileError("Conflict", "task %s runs in a terminal (pty), which has no stdin to close; send Ctrl-D (\\x04) as input to end a line-reading program's input" % task.id)
        if not task.has_stdin:
            raise FileError("Conflict", "task %s was started without stdin" % task.id)
        task.close_stdin()
        req.done(taskId=task.id)

    def op_task_signal(self, req):
        name = req.msg.get("signal")
        if name not in SIGNALS:
            req.error("ValidationError", "signal: must be one of %s, got %r" % (", ".join(SIGNALS), name))
            return
        task = self._task(req)
        task.send_signal(name)
        req.done(taskId=task.id, signal=name)

    def op_task_get(self, req):
        task = self._task(req)
        msg = req.msg
        if "stdoutOffset" not in msg and "stderrOffset" not in msg:
            req.done(**task.view())
            return
        offsets = {name: msg.get(name + "Offset", 0) for name in ("stdout", "stderr")}
        max_bytes = msg.get("maxBytes", 1 << 20)
        for v in list(offsets.values()) + [max_bytes]:
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                req.error("ValidationError", "offsets and maxBytes must be whole numbers from 0")
                return
        req.done(**task.read(offsets, min(max_bytes, 1 << 20)))

    def op_port_open(self, req):
        """Makes the inbound relay listen for `port` (inbound_relay.py); idempotent. Without a
        ports directory there is nothing to listen on: the fake driver's host reaches the port
        itself, and in listen mode the host opens a tunnel connection (listen.py) for each."""
        port = req.msg.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            req.error("ValidationError", "port: must be a whole number from 1 to 65535, got %r" % (port,))
            return
        if not PORTS_DIR:
            req.done(port=port, socket=None)
            return
        relay = self._inbound_relay()
        try:
            name = relay.open(port)
        except PortLimit as e:
            req.error("LimitExceeded", "port %d: %s" % (port, e))
            return
        except OSError as e:
            # Its name is taken by something the relay cannot remove (under gVisor, a socket the
            # session's own code bound there first), or the directory is full.
            req.error("Unavailable", "port %d: the inbound relay cannot listen at %s: %s" % (port, relay.socket_name(port), e.strerror or e))
            return
        req.done(port=port, socket=name)

    def _touch(self):
        """A connection through the inbound relay counts as activity for the idle clock."""
        self.last_activity = time.monotonic()

    def op_task_stop(self, req):
        task = self._task(req)
        task.stop()
        req.done(**task.view())

    def op_files_write(self, req):
        size = write_file(WORKSPACE, req.msg, req.inbound, req.cancelled)
        req.done(size=size)

    def op_files_read(self, req):
        f, size, mime = open_for_read(WORKSPACE, req.msg)
        with f:
            req.event({"ev": "file", "size": size, "mimeType": mime})
            while not req.cancelled.is_set():
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                send(req.rid, 0x42, chunk, req.gen)
        send(req.rid, 0x45, b"", req.gen)
        req.done(size=size)

    def op_files_list(self, req):
        req.done(entries=list_files(WORKSPACE, req.msg))

    def op_files_remove(self, req):
        remove_path(WORKSPACE, req.msg)
        req.done()

    def op_files_stat(self, req):
        req.done(entry=stat_path(WORKSPACE, req.msg))

    def op_files_mkdir(self, req):
        created, entry = make_dir(WORKSPACE, req.msg)
        req.done(created=created, entry=entry)

    def op_files_move(self, req):
        req.done(entry=move_path(WORKSPACE, req.msg))

    def op_files_watch(self, req):
        """Streams the changes under a directory until the request is cancelled (see watch.py)."""
        with self.watches_lock:
            # A watch its host cancelled is let go of within moments; it no longer counts (as for task streams).
            if sum(1 for c in self.watches if not c.is_set()) >= MAX_WATCHES:
                raise FileError("LimitExceeded", "the session has %d directory watches open, the most it may; stop one first" % MAX_WATCHES)
            self.watches.append(req.cancelled)
        try:
            watcher = Watcher(WORKSPACE, req.msg)
            try:
                req.event({"ev": "watch.started", "mode": watcher.mode})
                ended = watcher.run(req.event, req.cancelled)
            finally:
                watcher.close()
            req.done(ended=ended)
        finally:
            with self.watches_lock:
                self.watches.remove(req.cancelled)


def seed_matplotlib_cache():
    """The image carries matplotlib's font cache, built with it; MPLCONFIGDIR is on the session's
    empty /tmp, where the first `import matplotlib.pyplot` would otherwise build it again."""
    target = os.environ.get("MPLCONFIGDIR")
    if not target or not os.path.isdir(MPL_CACHE):
        return
    try:
        os.makedirs(target, exist_ok=True)
        for name in os.listdir(MPL_CACHE):
            if name.startswith("fontlist-") and not os.path.exists(os.path.join(target, name)):
                with open(os.path.join(MPL_CACHE, name), "rb") as src, open(os.path.join(target, name), "wb") as dst:
                    dst.write(src.read())
    except OSError as e:  # a slower first plot, nothing worse
        print("codebox: could not seed matplotlib's font cache: %s" % e, file=sys.stderr)


def deno_kernel():
    """The Deno kernel: all of Deno's permissions (the sandbox is the boundary), its cache under
    /tmp, no configuration file, package.json or update check that could make it fetch at start,
    and no colour codes in what it prints."""
    # js_transform.mjs imports the bare name `acorn`, which Deno resolves only through a map.
    modules = os.environ.get("NODE_PATH", "").split(os.pathsep)[0] or os.path.join(os.path.dirname(HERE), "node_modules")
    acorn = "file://" + urllib.parse.quote(os.path.join(os.path.abspath(modules), "acorn", "dist", "acorn.mjs"))
    scope = "file://" + urllib.parse.quote(HERE) + "/"
    import_map = json.dumps({"scopes": {scope: {"acorn": acorn}}})
    env = dict(
        os.environ, DENO_NO_UPDATE_CHECK="1", DENO_NO_PACKAGE_JSON="1", NO_COLOR="1",
        DENO_DIR=os.environ.get("DENO_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "/tmp/.cache", "deno"),
    )
    argv = [
        DENO, "run", "--allow-all", "--no-config", "--import-map=data:application/json," + urllib.parse.quote(import_map),
        os.path.join(HERE, "kernel_deno.mjs"),
    ]
    return Kernel(argv, env)


def _hang_up(conn):
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _TolerantStream:
    """stderr that a gone reader cannot break: a later server does not read what this one printed."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError:
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except OSError:
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _start_options():
    """CODEBOX_RLIMITS applied; the listen address (None: stdin/stdout or the channel directory)
    and the gateway port's proxy (parse_proxy_url's answer, or None). A bad variable ends the
    executor at once with a message naming it."""
    try:
        if RLIMITS:
            apply_rlimits(parse_rlimits(RLIMITS))
        gateway_proxy = None
        if GATEWAY_PROXY:
            if not os.environ.get("CODEBOX_GATEWAY_PORT"):
                raise StartError("CODEBOX_GATEWAY_PROXY needs CODEBOX_GATEWAY_PORT (the gateway port it serves)")
            try:
                gateway_proxy = parse_proxy_url(GATEWAY_PROXY)
            except ValueError as e:
                raise StartError(str(e)) from None
        if not LISTEN:
            return None, gateway_proxy
        if CHANNEL_DIR:
            raise StartError("CODEBOX_LISTEN and CODEBOX_CHANNEL_DIR exclude each other; give one")
        if not EXECUTOR_TOKEN:
            raise StartError("CODEBOX_EXECUTOR_TOKEN is required with CODEBOX_LISTEN (the token every connection must present)")
        return parse_listen(LISTEN), gateway_proxy
    except StartError as e:
        raise SystemExit("codebox executor: %s" % e)


if __name__ == "__main__":
    listen, gateway_proxy = _start_options()
    if listen:
        # A pod's executor is its pid 1, which the kernel spares from signals it has no handler
        # for: without this, deleting the pod would wait out its grace period for SIGKILL.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    if CHANNEL_DIR or listen:
        # The host may go (and come back): a write to its closed socket or stderr is an error to
        # handle, not a signal that ends the sandbox. Children get the default back (subprocess).
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        sys.stderr = _TolerantStream(sys.stderr)
    else:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if os.environ.get("CODEBOX_EGRESS_SOCKET") or gateway_proxy:
        # Before "ready", so a session's first call already finds the proxy on 127.0.0.1:3128
        # (and the gateway on 127.0.0.1:3129).
        start_relay(os.environ.get("CODEBOX_EGRESS_SOCKET"), gateway=bool(os.environ.get("CODEBOX_GATEWAY_PORT")), gateway_proxy=gateway_proxy)
    seed_matplotlib_cache()
    Executor().serve(listen)
