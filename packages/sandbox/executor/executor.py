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

import json  # noqa: E402  (after the prctl above, on purpose)
import os  # noqa: E402
import queue  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402

from egress_relay import start_relay  # noqa: E402
from inbound_relay import PortLimit, make_relay  # noqa: E402
from frame_json import MAX_JSON_FRAME, encode_json, utf8_size  # noqa: E402
from files import FileError, list_files, open_for_read, remove_path, write_file  # noqa: E402
from jobs import Capture, interrupt_tree, kill_tree, tree_snapshot  # noqa: E402
from kernel_channel import Listener, output_pair, popen_captured  # noqa: E402

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
PIDS_LIMIT = "the session reached its process limit; end some of its processes and try again"

# The version of this protocol; a host that speaks another one ends the session with that reason.
PROTOCOL = 1
CHANNEL_DIR = os.environ.pop("CODEBOX_CHANNEL_DIR", "")
# Where the inbound relay binds its port sockets: the channel directory (bwrap), or a directory
# of its own the host reaches (gVisor: a host-backed mount, runsc's --host-uds=create); neither
# for the fake driver, whose host reaches the ports itself.
PORTS_DIR = os.environ.pop("CODEBOX_PORTS_DIR", "") or CHANNEL_DIR

# The protocol owns fd 0 and fd 1 (on stdio); nothing else may write to fd 1.
_stdin = os.fdopen(os.dup(0), "rb", buffering=0)
_stdout_fd = os.dup(1)
devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(devnull, 0)
os.dup2(2, 1)


class Link:
    """The host's connection now: where frames go, and its generation (each new connection gets
    the next); frames of an earlier connection's requests are dropped, never sent to a new host."""

    def __init__(self):
        self.lock = threading.Lock()
        self.gen = 0
        self.write = None

    def attach(self, write):
        with self.lock:
            self.gen += 1
            self.write = write
            return self.gen

    def detach(self, gen):
        with self.lock:
            if self.gen == gen:
                self.gen += 1
                self.write = None

    def send(self, rid, kind, payload, gen):
        header = struct.pack(">IIB", 5 + len(payload), rid, kind)
        with self.lock:
            if self.write is None or (gen is not None and gen != self.gen):
                return
            try:
                self.write(header + payload)
            except OSError:  # the host went away: the reader sees it and detaches
                self.write = None


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

    def __init__(self, argv, env=None):
        self.argv = argv
        self.env = env
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
            self.argv, cwd=WORKSPACE, env=env, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
            start_new_session=True,
        )
        for fd in (out_w, err_w):
            os.close(fd)
        self.out_r, self.err_r = out_r, err_r
        if not self._connect(time.monotonic() + 30, lambda: False):
            code = self.proc.poll()
            self.kill()
            raise RuntimeError("kernel did not start (exit status %r)" % (code,))

    def _connect(self, deadline, cancelled):
        """Takes the kernel's connection for the next cell; False if it did not come."""
        proc = self.proc
        self.conn = self.listener.accept(proc.pid, deadline, lambda: cancelled() or proc.poll() is not None)
        self.ctl_buf = b""
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
        ask = {"id": cell, "preload": msg["preload"]} if "preload" in msg else {"id": cell, "code": msg["code"], "language": msg["language"]}
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
        def on_chunk(chunk):
            self.ctl_buf += chunk
            while b"\n" in self.ctl_buf:
                line, self.ctl_buf = self.ctl_buf.split(b"\n", 1)
                try:
                    m = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if not isinstance(m, dict) or m.get("id") != cell:
                    continue
                if m.get("type") == "display":
                    self._display(req, cap, m)
                elif m.get("type") == "done":
                    self._done = m
                    return True
            return False

        return on_chunk


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
    """A background command: runs until it ends or is stopped, however long. Its output is kept as
    the last `output_bytes` of stdout and stderr together (older bytes are dropped, counted, and
    `truncated` says so), readable whole (task.get) or from offsets on (task.get with offsets)."""

    def __init__(self, task_id, command, output_bytes, env=None, cwd=None):
        self.id = task_id
        self.status = "submitted"
        self.out = {"stdout": TaskOutput(), "stderr": TaskOutput()}
        self.lock = threading.Lock()
        self.truncated = False
        self.exit_code = None
        self.limit = output_bytes
        self.proc = popen_captured(
            ["/bin/sh", "-c", command], cwd=cwd or WORKSPACE, stdin=subprocess.DEVNULL, start_new_session=True,
            env=dict(os.environ, **env) if env else None,
        )
        self.status = "working"
        threading.Thread(target=self._collect, daemon=True).start()

    def _keep(self, name, chunk):
        with self.lock:
            stream, other = self.out[name], self.out["stderr" if name == "stdout" else "stdout"]
            chunk = chunk[-self.limit:] if self.limit > 0 else b""
            over = len(stream.buf) + len(other.buf) + len(chunk) - self.limit
            if over > 0:
                self.truncated = True
                over -= stream.drop(over)
                other.drop(over)
            stream.buf.extend(chunk)

    def _collect(self):
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ, "stdout")
        sel.register(self.proc.stderr, selectors.EVENT_READ, "stderr")
        open_pipes = 2
        while open_pipes:
            for key, _ in sel.select(timeout=0.5):
                chunk = os.read(key.fileobj.fileno(), CHUNK)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
                    continue
                self._keep(key.data, chunk)
            if self.proc.poll() is not None and not sel.select(timeout=0.05):
                break
        code = self.proc.wait()
        self.exit_code = code if code >= 0 else 128 - code
        if self.status != "canceled":
            self.status = "completed" if code == 0 else "failed"

    def stop(self):
        if self.status in ("submitted", "working"):
            self.status = "canceled"
            kill_tree(self.proc.pid)

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
        view = {"taskId": self.id, "status": self.status, "exitCode": self.exit_code, "truncated": self.truncated}
        final = self.status not in ("submitted", "working")
        with self.lock:
            for name, out in self.out.items():
                text, after, dropped = out.read(offsets[name], max_bytes, final)
                view[name] = text
                view[name + "Offset"] = after
                view[name + "Dropped"] = dropped
                view[name + "End"] = out.end
        return view


class Executor:
    def __init__(self):
        self.requests = {}
        self.kernels = {
            "python": Kernel([PYTHON, "-s", os.path.join(HERE, "kernel_python.py")]),
            "node": Kernel([NODE, "--disable-warning=ExperimentalWarning", os.path.join(HERE, "kernel_node.mjs")]),
        }
        if DENO and os.access(DENO, os.X_OK):
            self.kernels["deno"] = deno_kernel()
        self.runtimes = ["python", "nodejs"] + (["deno"] if "deno" in self.kernels else [])
        self.tasks = {}
        self.task_seq = 0
        # The inbound relay, made on the first `port.open`.
        self.inbound = None
        self.inbound_lock = threading.Lock()
        # The session this sandbox serves (op `session`): its idle timeout and deadline; None in the pool.
        self.session = None
        self.active = 0
        self.active_lock = threading.Lock()
        self.last_activity = time.monotonic()

    def serve(self):
        # No kernel starts here: an idle lean session is the executor alone (~8 MiB less than with
        # a Python kernel waiting); the first Python cell, or the preload before hand-over, starts it.
        if not CHANNEL_DIR:
            # stdin/stdout: the host is the process that started this one; when it goes, so does this.
            self._serve_connection(_stdin.read, _fd_writer(_stdout_fd))
        else:
            self._serve_socket()
        for kernel in self.kernels.values():
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
            self._serve_connection(conn.recv, conn.sendall)
            conn.close()
            if self.session is None:
                return  # a pool sandbox: nobody will hand it over now

    def _should_end(self):
        """While no host is connected: past the session's deadline, or idle for its idle timeout."""
        if self.session is None:
            return False
        now = time.time()
        if now * 1000 >= self.session["deadlineMs"]:
            return True
        return self.active == 0 and (time.monotonic() - self.last_activity) * 1000 >= self.session["idleTimeoutMs"]

    def _serve_connection(self, reader, write):
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
                req.error("SandboxFailure", "%s: %s" % (type(e).__name__, e))
        finally:
            self.requests.pop((req.gen, req.rid), None)
            with self.active_lock:
                self.active -= 1
                self.last_activity = time.monotonic()

    def op_ping(self, req):
        req.done(pid=os.getpid())

    def op_exec(self, req):
        runtime = req.msg.get("runtime") or "nodejs"
        if req.msg.get("language") == "python":
            family = "python"
        elif runtime in self.runtimes and runtime != "python":
            family = "deno" if runtime == "deno" else "node"
        else:
            why = "is not in this sandbox's image" if runtime == "deno" else "cannot run %s" % req.msg.get("language")
            req.error("ValidationError", "runtime %s %s; use one of: %s" % (runtime, why, ", ".join(self.runtimes[1:])))
            return
        kernel = self.kernels[family]
        with kernel.lock:
            kernel.run(req)

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
        msg = req.msg
        env = msg.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            req.error("ValidationError", "env must map names to strings")
            return
        cwd = msg.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or not os.path.isdir(cwd)):
            req.error("ValidationError", "cwd: %r is not a directory in the sandbox" % (cwd,))
            return
        self.task_seq += 1
        task_id = "task-%d" % self.task_seq
        self.tasks[task_id] = Task(task_id, msg["command"], msg.get("outputBytes", 1 << 20), env, cwd)
        req.done(taskId=task_id, status=self.tasks[task_id].status)

    def _task(self, req):
        task = self.tasks.get(req.msg.get("taskId"))
        if task is None:
            raise FileError("NotFound", "no task %r in this session" % req.msg.get("taskId"))
        return task

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
        ports directory (the fake driver) there is no relay: the host reaches the port itself."""
        port = req.msg.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            req.error("ValidationError", "port: must be a whole number from 1 to 65535, got %r" % (port,))
            return
        if not PORTS_DIR:
            req.done(port=port, socket=None)
            return
        with self.inbound_lock:
            if self.inbound is None:
                self.inbound = make_relay(PORTS_DIR, on_activity=self._touch)
        try:
            name = self.inbound.open(port)
        except PortLimit as e:
            req.error("LimitExceeded", "port %d: %s" % (port, e))
            return
        except OSError as e:
            # Its name is taken by something the relay cannot remove (under gVisor, a socket the
            # session's own code bound there first), or the directory is full.
            req.error("Unavailable", "port %d: the inbound relay cannot listen at %s: %s" % (port, self.inbound.socket_name(port), e.strerror or e))
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


if __name__ == "__main__":
    if CHANNEL_DIR:
        # The host may go (and come back): a write to its closed socket or stderr is an error to
        # handle, not a signal that ends the sandbox. Children get the default back (subprocess).
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        sys.stderr = _TolerantStream(sys.stderr)
    else:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if os.environ.get("CODEBOX_EGRESS_SOCKET"):
        # Before "ready", so a session's first call already finds the proxy on 127.0.0.1:3128.
        start_relay(os.environ["CODEBOX_EGRESS_SOCKET"], gateway=bool(os.environ.get("CODEBOX_GATEWAY_PORT")))
    seed_matplotlib_cache()
    Executor().serve()
