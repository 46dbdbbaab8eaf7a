"""codebox bash kernel: one persistent shell behind the executor (docs/executor-protocol.md).

The kernel keeps a `bash --noprofile --norc` child whose stdout and stderr are the kernel's own,
so a cell's output streams to the executor as it is printed. Variables, functions, `cd` and
exported variables carry from cell to cell, as in a terminal. A cell is written to a private file
and the shell `source`s it, with stdin /dev/null (a cell that reads stdin gets end of file), then
writes `<token> <status>` on a status pipe: an fd only the shell holds and only this kernel reads,
closed while the cell runs, so nothing the cell starts inherits it. The kernel never parses the
cell's output. A status other than 0 is the cell's error (`ExitCode`). `exit` ends the shell: the
cell ends with `ShellExited` and the next cell runs in a new shell.

Ctrl-C (the executor's SIGINT while a cell runs) goes to the shell's process group, as a
terminal's does: the command in the foreground dies, and the shell's INT trap returns from the
cell (from the functions it runs, then from the cell's file), so the shell and its state survive.
Children get the default SIGINT; background jobs ignore it, as non-interactive bash makes them.
"""

import os
import re
import secrets
import select
import shlex
import signal
import subprocess
import sys
import tempfile

from kernel_peer import connect, read_request, send

BASH = "/bin/bash"
# The status pipe's fd in the shell: high, out of the way of the fds scripts pick (3-9, and 10 up
# for `{var}` redirections), and below the lowest RLIMIT_NOFILE a session may have (64).
STATUS_FD = 63
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Run after an interrupted cell: the DEBUG trap the interrupt set is replaced by the cell's own.
RESTORE_DEBUG_TRAP = ('if [[ ${__codebox_debug_trap+1} ]]; then builtin trap - DEBUG; '
                      'builtin eval "$__codebox_debug_trap"; builtin unset -v __codebox_debug_trap; fi\n')
# A status line is "<32 hex digits> <number>\n"; anything longer without a newline is not one.
MAX_STATUS_LINE = 256


class ShellGone(Exception):
    """The shell ended (`exit`, `exec`, a signal) before the cell's status came."""

    def __init__(self, returncode):
        super().__init__(returncode)
        self.returncode = returncode


class Shell:
    """The bash child: its command pipe (its stdin, which it reads its next command from), its status pipe."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None
        self.commands = -1
        self.status = -1

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        status_r, status_w = os.pipe()
        commands_r, commands_w = os.pipe()
        try:
            fd = min(STATUS_FD, _fd_limit() - 1)
            if status_w != fd:
                os.dup2(status_w, fd, inheritable=False)
                os.close(status_w)
                status_w = fd
            env = dict(os.environ)
            env.pop("CODEBOX_KERNEL_CHANNEL", None)
            group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
            self.proc = subprocess.Popen(
                [BASH, "--noprofile", "--norc", "-s"], stdin=commands_r, pass_fds=(status_w,), env=env, **group,
            )
        except BaseException:
            for f in (status_r, commands_w):
                os.close(f)
            raise
        finally:
            os.close(commands_r)
            os.close(status_w)
        self.commands, self.status, self.status_fd = commands_w, status_r, fd
        self.buf = b""
        self.write("builtin trap %s INT\n" % shlex.quote(self._on_interrupt()))

    def _on_interrupt(self):
        """The shell's INT trap. In a cell (in its file, or a function or file it runs; never in
        the kernel's own files around it, nor between cells) it returns, and sets a DEBUG trap
        that returns again before each next command until the cell's file has returned: a
        function that called the one interrupted, or a loop around it, stops too. It first sets
        itself again (a trap's `return` can leave bash's SIGINT handler at the one it uses while
        it waits for a child, which runs no trap in a loop of builtins) and keeps the cell's own
        DEBUG trap, which the kernel puts back after the cell (RESTORE_DEBUG_TRAP)."""
        inside = "${BASH_SOURCE[0]-} && " + " && ".join(
            "${BASH_SOURCE[0]} != %s" % shlex.quote(self.path(n)) for n in ("enter", "leave"))
        unwind = "if [[ %s ]]; then builtin return 130; fi" % inside
        return ('if [[ %s ]]; then builtin eval "$(builtin trap -p INT)"; '
                '[[ ${__codebox_debug_trap+1} ]] || __codebox_debug_trap=$(builtin trap -p DEBUG); '
                'builtin trap %s DEBUG; builtin return 130; fi') % (inside, shlex.quote(unwind))

    def path(self, name):
        return os.path.join(self.workdir, name)

    def write(self, text):
        data = text.encode("utf-8", "surrogatepass")
        try:
            while data:
                data = data[os.write(self.commands, data):]
        except BrokenPipeError:
            pass  # the shell has gone: the cell's wait sees it

    def close(self):
        """Forgets a shell that ended (and reaps it)."""
        for fd in (self.commands, self.status):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    def interrupt(self):
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def run(self, code, env, wake):
        """Runs one cell; returns its status, or raises ShellGone."""
        token = secrets.token_hex(16)
        run = []
        keep = "%d>&- 0</dev/null" % self.status_fd
        if env:
            _private_file(self.path("enter"), _enter(env))
            _private_file(self.path("leave"), _leave(env))
            run.append("builtin source %s %s" % (shlex.quote(self.path("enter")), keep))
        _private_file(self.path("cell"), code)
        run.append("builtin source %s %s" % (shlex.quote(self.path("cell")), keep))
        if env:
            run.append('builtin source %s "$?" %s' % (shlex.quote(self.path("leave")), keep))
        run.append("builtin printf '%%s %%d\\n' %s \"$?\" >&%d" % (token, self.status_fd))
        self.write("; ".join(run) + "\n")
        try:
            return self._status(token, wake)
        finally:
            for name in ("cell", "enter", "leave"):
                try:
                    os.unlink(self.path(name))
                except FileNotFoundError:
                    pass

    def _status(self, token, wake):
        """Waits for the line `<token> <status>`; what else comes on the pipe is dropped."""
        while True:
            ready, _, _ = select.select([self.status, wake], [], [], 1.0)
            if wake in ready:
                _drain(wake)  # SIGCHLD or SIGINT woke us
            if self.status in ready:
                chunk = os.read(self.status, 4096)
                if not chunk:
                    raise ShellGone(self._reap())
                self.buf += chunk
                while b"\n" in self.buf:
                    line, self.buf = self.buf.split(b"\n", 1)
                    parts = line.split(b" ")
                    if len(parts) == 2 and parts[0] == token.encode() and parts[1].isdigit() and len(parts[1]) <= 3:
                        return int(parts[1])
                if len(self.buf) > MAX_STATUS_LINE:
                    self.buf = b""
            elif self.proc.poll() is not None:
                # Gone, though something it started may still hold the status pipe open.
                raise ShellGone(self.proc.returncode)

    def _reap(self):
        """The shell's exit status once its status pipe closed; a shell that closed it and lives on
        (a cell that closed the fd bash saved it in) can report no status again, so it is killed."""
        try:
            return self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return self.proc.wait()


def _fd_limit():
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _private_file(path, text):
    """Writes a new file only this uid can read; never through something the cell left at `path`."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with open(fd, "wb") as f:
        f.write(text.encode("utf-8", "surrogatepass"))


def _enter(env):
    """Shell code that saves each variable of the cell's `env` and exports the cell's value.

    Names are shell names (the executor checks); `${NAME+...}` keeps `set -u` quiet, `|| :` keeps
    `set -e` from ending the shell on a readonly variable (bash says so on stderr)."""
    lines = ["__codebox_was=() __codebox_saved=()"]
    for i, (name, value) in enumerate(env.items()):
        lines.append("__codebox_was[%d]=${%s+1} __codebox_saved[%d]=${%s+\"${%s[@]@A}\"}" % (i, name, i, name, name))
        lines.append("builtin export %s=%s || :" % (name, shlex.quote(value)))
    return "\n".join(lines) + "\n"


def _leave(env):
    """Shell code that puts back what _enter saved (attributes too), then returns the cell's status ($1)."""
    lines = []
    for i, name in enumerate(env):
        lines.append(
            "if [[ ${__codebox_was[%d]-} ]]; then builtin export -n %s; builtin eval \"${__codebox_saved[%d]}\"; "
            "else builtin unset -v %s; fi 2>/dev/null || :" % (i, name, i, name)
        )
    lines.append("builtin unset -v __codebox_was __codebox_saved")
    lines.append('builtin return "$1"')
    return "\n".join(lines) + "\n"


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _undumpable():
    """Processes a cell starts run as this uid: without this they could open /proc/<kernel>/mem
    and take over the kernel's channel to the executor. bash itself is dumpable again (exec)."""
    import ctypes

    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


class Kernel:
    def __init__(self):
        self.workdir = tempfile.mkdtemp(prefix="codebox-bash-")  # mode 0700
        self.shell = Shell(self.workdir)
        self.running = False
        self.interrupted = False
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGINT, self._on_sigint)
        # A handler (not SIG_DFL) so that SIGCHLD writes to the wakeup fd: a shell that exits wakes the wait.
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def _on_sigint(self, signum, frame):
        """Ctrl-C: passed to the shell's process group while a cell runs; nothing between cells."""
        if self.running:
            self.interrupted = True
            self.shell.interrupt()

    def run_cell(self, req):
        """Runs one cell; returns its `done` message."""
        cell_id = req["id"]
        env = req.get("env") if isinstance(req.get("env"), dict) else None
        bad = [str(k) for k in env or () if not (isinstance(k, str) and _SHELL_NAME.fullmatch(k) and isinstance(env[k], str))]
        if bad:  # the executor refuses these first; a name is written into shell code
            message = "env: %r is not a shell variable name with a string value" % bad[0][:64]
            return _failed(cell_id, "ValueError", message, message + "\n", 1)
        self.interrupted = False
        try:
            if not self.shell.alive():
                self.shell.close()
                self.shell.start()
        except OSError as e:
            message = "cannot start bash: %s" % e
            return _failed(cell_id, "ShellError", message, message + "\n", 1)
        try:
            self.running = True
            try:
                status = self.shell.run(req["code"], env, self.wake_r)
            finally:
                self.running = False
        except ShellGone as gone:
            self.shell.close()
            try:
                self.shell.start()  # now, so that the next cell finds it (and its process is no cell's)
            except OSError:
                pass  # the next cell tries again, and says why
            return _failed(cell_id, "ShellExited", *_exit_message(gone.returncode))
        if self.interrupted:
            self.shell.write(RESTORE_DEBUG_TRAP)
            message = "the cell was interrupted; the shell and its variables are kept"
            return _failed(cell_id, "Interrupted", message, "Interrupted: %s\n" % message, 130)
        if status != 0:
            return _failed(cell_id, "ExitCode", str(status), "", status)
        return {"id": cell_id, "type": "done", "ok": True}

    def serve(self):
        self.shell.start()
        conn = connect()
        while conn is not None:
            req = read_request(conn)
            done = self.run_cell(req) if req is not None else None
            # Connect for the next cell before `done`, so that the executor finds it waiting.
            next_conn = connect()
            if done is not None:
                send(conn.fileno(), done)
            conn.close()
            conn = next_conn


def _exit_message(returncode):
    """(message, traceback, exitCode) of a shell that ended with `returncode` (Popen's: -N for signal N)."""
    if returncode < 0:
        try:
            how = "was killed by %s" % signal.Signals(-returncode).name
        except ValueError:
            how = "was killed by signal %d" % -returncode
        code = 128 - returncode
    else:
        how = "exited with status %d" % returncode
        code = returncode
    message = ("the shell %s; the next cell starts a new shell, without the variables, functions and "
               "working directory of earlier cells" % how)
    return message, message + "\n", code


def _failed(cell_id, name, message, traceback, exit_code):
    return {"id": cell_id, "type": "done", "ok": False, "exitCode": exit_code,
            "error": {"name": name, "message": message, "traceback": traceback}}


def main():
    _undumpable()
    kernel = Kernel()
    try:
        kernel.serve()
    finally:
        import shutil

        shutil.rmtree(kernel.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
